"""MNIST and Fashion-MNIST as in-memory tensors, with static or dynamic binarisation, or
dequantised grey levels.

The data folder comes from one setting: the ``root`` argument, else the
environment variable ``VAELIB_DATA``, else ``~/.cache/vaelib/data``. It uses
torchvision's own layout (``<root>/MNIST/raw/train-images-idx3-ubyte`` and so
on). Missing files are downloaded when the network allows; when it does not, a
`DatasetNotFoundError` says which folder was searched and how to point
``VAELIB_DATA`` at a copy. The raw files are checked against the originals' sizes
and MD5s and always win over torchvision's old cache (``processed/``), which is read
only when the raw files are absent, and only when it holds the original images.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import os
import struct
import sys
from pathlib import Path
from typing import Iterator, Sequence

import torch

DATA_ENV = "VAELIB_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/vaelib/data")
BINARIZE_MODES = (None, "static", "dynamic")
STATIC_BINARIZE_SEED = 0

_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# (bytes, MD5) of each original uncompressed file, to tell a damaged file from a good one
_RAW_CHECKS = {
    "MNIST": {
        "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": (47040016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte": (60008, "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte": (7840016, "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte": (10008, "15d484375f8d13e6eb1aabb0c3f46965"),
    },
}


def dequantize(x: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Grey levels spread uniformly over their quantisation bins: ``(x (levels - 1) + u) / levels``.

    ``x``: images in [0, 1] stored as ``k / (levels - 1)`` for integers k (8-bit pixels by
    default); ``u ~ U[0, 1)`` per pixel, drawn from PyTorch's global generator. The result lies
    in [k / levels, (k + 1) / levels), so a density p on [0, 1]^D fitted to it gives the
    discrete probability of the 8-bit image a lower bound, log P(k) >= E_u log p - D log(levels)
    (Theis et al., 2016); `vaelib.bits_per_dim` turns that into bits per pixel. Values off the
    grid (already dequantised, resized, normalised) are refused: their bins would be wrong.
    """
    check_unit_range(x, "images to dequantize")
    check_grey_levels(x, levels, "images to dequantize")
    return _spread(x, levels)


def _spread(x: torch.Tensor, levels: int = 256) -> torch.Tensor:  # `dequantize` without the check
    return torch.rand_like(x).add_(x * (levels - 1)).div_(levels)


def check_grey_levels(x: torch.Tensor, levels: int = 256, what: str = "images") -> None:
    """Raise ``ValueError`` unless every value of ``x`` is a grey level ``k / (levels - 1)`` for a whole
    k, within the rounding of ``x``'s dtype (a thousandth of a level for float32 and float64).

    What dequantisation needs: it spreads each value over the bin of its level, so a value between
    two levels would be spread over the wrong bin. Reads values back, in chunks (no full copy).
    """
    top = levels - 1
    tolerance = max(1e-3, top * torch.finfo(x.dtype).eps) if x.is_floating_point() else 0.0
    flat, bad, example = x.detach().reshape(-1), 0, None
    for chunk in flat.split(1 << 20):
        scaled = chunk.to(torch.promote_types(chunk.dtype, torch.float32)) * top
        off = (scaled - scaled.round()).abs() > tolerance
        if bool(off.any()):
            bad += int(off.sum())
            example = chunk[off][0].item() if example is None else example
    if bad:
        bits = math.log2(levels)
        depth = f"{bits:g}-bit grey levels" if bits.is_integer() else f"grey levels of {levels} steps"
        raise ValueError(f"{what} must be {depth} k/{top} (k = 0..{top}), as vaelib.load_mnist gives; {bad} "
                         f"value{'s are' if bad > 1 else ' is'} not (e.g. {example:.6g} = {example * top:.4g}/{top}): "
                         "already dequantized, resized or normalised? Pass the images as loaded")


def check_unit_range(x: torch.Tensor, what: str = "pixel values") -> None:
    """Raise ``ValueError`` unless every value of ``x`` lies in [0, 1]; NaN fails too.

    The one range check of vaelib's images (the models' inputs, binarisation, dequantisation,
    `vaelib.pixel_entropy`). It reads the minimum and maximum back from the device, so callers
    keep it out of a GPU training step. ``what`` names the values in the message.
    """
    if not x.numel():
        return
    lo, hi = (v.item() for v in torch.aminmax(x))
    if 0 <= lo and hi <= 1:  # written so that NaN (which compares False) fails it
        return
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{what} must be numbers in [0, 1]; {int(torch.isnan(x).sum())} are NaN "
                         "(a division by zero or a failed load upstream?)")
    raise ValueError(f"{what} must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]; "
                     "scale images by 1/255 (vaelib.load_mnist does)")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not in the data folder and could not be downloaded."""


class DamagedDataError(DatasetNotFoundError):
    """A dataset file is there but is not the original (wrong size or checksum, impossible labels)."""


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data folder: ``root``, else ``$VAELIB_DATA``, else ``~/.cache/vaelib/data``."""
    if root is None:
        root = os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(root).expanduser().resolve()


class InMemoryData:
    """A dataset held as tensors, batched by slicing (no worker processes).

    Args:
        x: inputs, shape ``(N, ...)``; for images ``(N, 1, 28, 28)`` float32 in [0, 1].
        y: labels, shape ``(N,)`` int64, or ``None``.
        binarize: ``"dynamic"`` draws every pixel as Bernoulli(grey level) each
            time a batch is made; ``None`` returns ``x`` as stored.
        dequantize: with ``binarize=None``, `dequantize` every batch afresh (uniform noise
            within each pixel's 8-bit bin); ``x`` must then hold 8-bit grey levels k/255.
        classes: names of the labels, if any.

    Batches are ``(x, y)`` tuples (``(x,)`` without labels) on the data's device.
    Shuffling and dynamic binarisation use PyTorch's global generator, so
    `vaelib.seed_everything` makes them repeatable.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        binarize: str | None = None,
        classes: Sequence[str] | None = None,
        name: str = "data",
        dequantize: bool = False,
    ) -> None:
        if binarize not in (None, "dynamic"):
            raise ValueError(
                f"InMemoryData binarize must be None or 'dynamic', got {binarize!r} "
                "(static binarisation is applied once, when loading)"
            )
        if dequantize and binarize is not None:
            raise ValueError("dequantize applies to grey levels; it cannot be combined with binarisation")
        if y is not None and len(y) != len(x):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}; they must match")
        if binarize == "dynamic" or dequantize:  # checked once here: batches then read nothing back
            check_unit_range(x, "images to binarise" if binarize else "images to dequantize")
        if dequantize:
            check_grey_levels(x, 256, "images to dequantize")
        self.x, self.y = x, y
        self.binarize = binarize
        self.dequantize = bool(dequantize)
        self.classes = list(classes) if classes is not None else None
        self.name = name

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (
            f"InMemoryData({self.name!r}, n={len(self)}, x={tuple(self.x.shape)}, "
            f"binarize={self.binarize!r}, " + ("dequantize=True, " if self.dequantize else "")
            + f"device={self.device})"
        )

    @property
    def device(self) -> torch.device:
        return self.x.device

    def _make(self, index) -> tuple[torch.Tensor, ...]:
        if isinstance(index, torch.Tensor) and index.dim() == 1:  # a shuffled batch's indices: index_select
            x = self.x.index_select(0, index)  # copies whole rows, about 5x faster on the CPU than x[index]
            y = None if self.y is None else self.y.index_select(0, index)
        else:
            x, y = self.x[index], None if self.y is None else self.y[index]
        if self.binarize == "dynamic":  # Bernoulli(x) per pixel: u < x with u ~ U[0, 1)
            x = torch.rand_like(x).lt_(x)  # on the CPU: torch.bernoulli(x)'s draws, at a third of its cost
        elif self.dequantize:
            x = _spread(x)
        return (x,) if y is None else (x, y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self._make(i)

    def subset(self, index: torch.Tensor | slice | Sequence[int]) -> "InMemoryData":
        """The examples at ``index`` (a slice, or a sequence/tensor of indices)."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        y = None if self.y is None else self.y[index]
        return InMemoryData(self.x[index], y, binarize=self.binarize, classes=self.classes, name=self.name,
                            dequantize=self.dequantize)

    def fingerprint(self) -> str:
        """A short hash of the stored images, labels and binarisation mode: two datasets with the
        same fingerprint hold the same examples in the same order (used to key cached runs)."""
        h = hashlib.sha256(f"{tuple(self.x.shape)} {self.x.dtype} {self.binarize}".encode()
                           + (b" dequantized" if self.dequantize else b""))
        h.update(self.x.detach().cpu().contiguous().numpy().tobytes())
        if self.y is not None:
            h.update(self.y.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def to(self, device: torch.device | str) -> "InMemoryData":
        """A copy on ``device`` (the same object if it is already there)."""
        device = torch.device(device)
        if self.device == device or (device.index is None and self.device.type == device.type):
            return self
        y = None if self.y is None else self.y.to(device)
        return InMemoryData(self.x.to(device), y, binarize=self.binarize, classes=self.classes, name=self.name,
                            dequantize=self.dequantize)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        n = len(self)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield batches of ``batch_size`` examples, in order or shuffled."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, device=self.device) if shuffle else None
        for b in range(self.num_batches(batch_size, drop_last)):
            lo, hi = b * batch_size, min((b + 1) * batch_size, n)
            yield self._make(slice(lo, hi) if order is None else order[lo:hi])


def _expected_layout(folder: str) -> str:
    return "\n".join(f"    <{DATA_ENV}>/{folder}/raw/{f}" for f in _RAW_FILES)


def _damaged(path: Path, what: str) -> DamagedDataError:
    return DamagedDataError(f"{path} is damaged: {what}. Delete it, then run again to download it afresh "
                            "(or copy an intact file there).")


def _check_raw_files(folder: str, root: str, train: bool) -> None:
    """Raise `DamagedDataError` for a raw file of the split that is present but not the original.

    Files that are absent are left to the download. The sizes are checked first (a download
    cut short, an empty file), then the MD5 of the whole file (overwritten bytes).
    """
    for name, (size, md5) in _RAW_CHECKS[folder].items():
        if name.startswith("train") != train:
            continue
        path = Path(root) / folder / "raw" / name
        if not path.is_file():
            continue
        actual = path.stat().st_size
        if actual != size:
            raise _damaged(path, f"it has {actual:,} bytes where the original has {size:,} (a download cut short?)")
        digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        if digest != md5:
            raise _damaged(path, f"its bytes differ from the original's (MD5 {digest}, expected {md5})")


def _split_files(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _stale_cache(path: Path, what: str) -> DamagedDataError:
    return DamagedDataError(f"{path} is damaged: {what}. Delete it (torchvision's old cache; vaelib reads the raw "
                            "files instead), then run again: the raw files are downloaded if they are missing.")


def _as_original(folder: str, train: bool, images: torch.Tensor, labels: torch.Tensor) -> bool:
    """Whether ``images`` and ``labels`` are the original split: the raw files they would make have
    the originals' MD5s."""
    image_md5, label_md5 = (_RAW_CHECKS[folder][name][1] for name in _split_files(train))
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) <= 255):
        return False
    n = len(images)
    image_bytes = struct.pack(">IIII", 2051, n, 28, 28) + images.contiguous().numpy().tobytes()
    label_bytes = struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes()
    return (hashlib.md5(image_bytes, usedforsecurity=False).hexdigest() == image_md5
            and hashlib.md5(label_bytes, usedforsecurity=False).hexdigest() == label_md5)


def _read_processed(folder: str, path: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's old cache of one split, ``(images, labels)``, only if it holds the original images."""
    try:
        payload = torch.load(path, weights_only=True)
    except OSError:  # there but unreadable (a permission): say so, as the OS does, and advise nothing
        raise
    except Exception as err:  # never pass on torch's advice to load it with weights_only=False
        raise _stale_cache(path, f"the safe loader cannot read it ({type(err).__name__}); it is not the pair of "
                                 "tensors torchvision saved") from None
    ok = (isinstance(payload, (tuple, list)) and len(payload) == 2 and all(isinstance(t, torch.Tensor) for t in payload)
          and payload[0].dtype == torch.uint8 and tuple(payload[0].shape[1:]) == (28, 28)
          and payload[1].dim() == 1 and len(payload[1]) == len(payload[0]) and not payload[1].is_floating_point())
    if not ok or not _as_original(folder, train, *payload):
        raise _stale_cache(path, f"it holds other images than the original {folder} "
                                 f"{'training' if train else 'test'} split (their MD5s differ)")
    return payload[0], payload[1].long()


def _created_dirs(path: Path) -> list[Path]:
    """The folders from ``path`` up that do not exist yet (deepest first)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _setting(root_given: bool) -> str:
    if root_given:
        return "given as root=, or as --data on the command line"
    if os.environ.get(DATA_ENV):
        return f"{DATA_ENV} is set to {os.environ[DATA_ENV]!r}"
    return f"{DATA_ENV} is not set, so the default {DEFAULT_DATA_DIR} was used"


# torchvision's class names (`torchvision.datasets.MNIST.classes`, `FashionMNIST.classes`)
CLASSES = {
    "MNIST": ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
              "8 - eight", "9 - nine"),
    "FashionMNIST": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"),
}


def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format: two zero bytes, 0x08, the number of
    dimensions, each dimension as a big-endian uint32, then the bytes), as a uint8 tensor."""
    data = path.read_bytes()
    head = 4 + 4 * ndim
    if len(data) < head or data[:4] != bytes([0, 0, 0x08, ndim]):
        raise _damaged(path, f"it does not start as an IDX file of unsigned bytes with {ndim} dimension(s)")
    dims = struct.unpack(f">{ndim}I", data[4:head])
    if len(data) - head != math.prod(dims):
        raise _damaged(path, f"its header says {'x'.join(map(str, dims))} bytes, but it holds {len(data) - head}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=head).reshape(dims)


@functools.lru_cache(maxsize=8)
def _load_raw(folder: str, root: str, train: bool, download: bool, root_given: bool = False):
    """Read one split: uint8 images (N, 28, 28), int64 labels, class names.

    The raw files, when both of the split are there (checked against the originals first), are
    read directly, so a stale torchvision ``processed/`` cache never replaces them; without them,
    that cache is read only if it holds the original images; else torchvision downloads the raw
    files.
    """
    _check_raw_files(folder, root, train)
    raw = [Path(root) / folder / "raw" / name for name in _split_files(train)]
    processed = Path(root) / folder / "processed"
    classes = list(CLASSES[folder])
    if all(path.is_file() for path in raw):  # the originals: they win over any processed/ cache
        # read here, not by torchvision, whose import alone takes about 2 s (it loads torch._dynamo)
        images, labels = _read_idx(raw[0], ndim=3), _read_idx(raw[1], ndim=1).long()
    elif all((processed / name).is_file() for name in ("training.pt", "test.pt")):  # where torchvision would look
        images, labels = _read_processed(folder, processed / ("training.pt" if train else "test.pt"), train)
    else:
        import torchvision.datasets as tvd

        cls = {"MNIST": tvd.MNIST, "FashionMNIST": tvd.FashionMNIST}[folder]
        ds = _download(cls, folder, root, train, download, root_given)
        images, labels = ds.data, ds.targets
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < len(classes)):
        raise _damaged(raw[1], f"it holds labels from {int(labels.min())} to {int(labels.max())}, "
                               f"outside 0..{len(classes) - 1}")
    return images.clone(), labels.clone(), classes


def _download(cls, folder: str, root: str, train: bool, download: bool, root_given: bool):
    """torchvision's dataset of the split, downloading the raw files when allowed."""
    try:
        return cls(root=root, train=train, download=False)
    except RuntimeError:
        reason = "download disabled (download=False)"
    if download:
        print(f"Downloading {folder} into {root} ...", file=sys.stderr)  # stdout may be a result (the CLI's JSON)
        new_dirs = _created_dirs(Path(root) / folder / "raw")  # removed again if the download fails
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                return cls(root=root, train=train, download=True)
        except Exception as err:  # urllib, HTTP and disk errors all land here
            reason = "download failed: " + " ".join(f"{type(err).__name__}: {err}".split())
            for d in new_dirs:  # a mistyped folder is not left behind
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if empty
    raise DatasetNotFoundError(
        f"{folder} was not found in {root} ({_setting(root_given)}) and could not be downloaded ({reason}).\n"
        f"Point the environment variable {DATA_ENV} (or the root= argument, --data on the command line) "
        f"at a folder laid out as torchvision expects:\n{_expected_layout(folder)}\n"
        "or run once with internet access so the files are downloaded there."
    ) from None


def _load(
    folder: str,
    split: str,
    root: str | os.PathLike | None,
    binarize: str | None,
    download: bool,
    dequantize: bool = False,
) -> InMemoryData:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"binarize must be one of {BINARIZE_MODES}, got {binarize!r}")
    if dequantize and binarize is not None:
        raise ValueError(f"dequantize applies to grey levels; it cannot be combined with binarize={binarize!r}")
    images, labels, classes = _load_raw(folder, str(data_dir(root)), split == "train", download, root is not None)
    x = images.unsqueeze(1).to(torch.float32).div_(255.0)  # (N, 1, 28, 28) in [0, 1]
    if binarize == "static":
        g = torch.Generator().manual_seed(STATIC_BINARIZE_SEED + (split == "test"))
        x = torch.bernoulli(x, generator=g)
    return InMemoryData(
        x,
        labels.clone(),
        binarize="dynamic" if binarize == "dynamic" else None,
        classes=classes,
        name=f"{folder}-{split}" + (f"-{binarize}" if binarize else "") + ("-dequantized" if dequantize else ""),
        dequantize=dequantize,
    )


def load_mnist(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    binarize: str | None = None,
    download: bool = True,
    dequantize: bool = False,
) -> InMemoryData:
    """MNIST digits as an `InMemoryData` of ``(N, 1, 28, 28)`` float32 images and int64 labels.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: data folder; defaults to ``$VAELIB_DATA``, else ``~/.cache/vaelib/data``.
        binarize: ``None`` keeps grey levels in [0, 1]; ``"static"`` draws each
            pixel once as Bernoulli(grey level) with a fixed seed, so the binary
            images never change; ``"dynamic"`` draws a fresh binary image every
            time an example is used.
        download: try to download the files when they are missing.
        dequantize: with ``binarize=None``, spread each grey level uniformly over its
            8-bit bin afresh every time an example is used (`dequantize`).

    Raises:
        DatasetNotFoundError: the files are missing and could not be downloaded.
    """
    return _load("MNIST", split, root, binarize, download, dequantize)


def load_fashion_mnist(split: str = "train", *, root: str | os.PathLike | None = None,
                       binarize: str | None = None, download: bool = True,
                       dequantize: bool = False) -> InMemoryData:
    """Fashion-MNIST (Zalando's clothing images); the same interface as `load_mnist`."""
    return _load("FashionMNIST", split, root, binarize, download, dequantize)
