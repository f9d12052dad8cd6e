import urllib.error
import urllib.request

import pytest
import torch

import vaelib
from vaelib import InMemoryData
from vaelib.data import DEFAULT_DATA_DIR

# Published facts about MNIST, independent of this code.
MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
MNIST_PIXEL_MEAN, MNIST_PIXEL_STD = 0.1307, 0.3081  # the usual normalisation constants


def test_mnist_train_shapes_ranges_and_labels(mnist_train):
    x, y = mnist_train.x, mnist_train.y
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert torch.bincount(y).tolist() == MNIST_TRAIN_CLASS_COUNTS
    assert y[:10].tolist() == MNIST_FIRST_TRAIN_LABELS
    assert x.mean().item() == pytest.approx(MNIST_PIXEL_MEAN, abs=5e-5)
    assert x.std().item() == pytest.approx(MNIST_PIXEL_STD, abs=5e-5)
    assert mnist_train.classes[0].startswith("0") and len(mnist_train.classes) == 10


def test_mnist_test_split(mnist_test):
    assert mnist_test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(mnist_test.y).tolist() == MNIST_TEST_CLASS_COUNTS


def test_static_binarisation_is_binary_fixed_and_unbiased(mnist_train):
    a = vaelib.load_mnist("train", binarize="static")
    b = vaelib.load_mnist("train", binarize="static")
    assert set(a.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.x, b.x), "static binarisation must give the same images every time"
    assert a.binarize is None  # nothing more is drawn per batch
    # E[Bernoulli(p)] = p: the binary mean matches the grey-level mean within sampling error
    n = a.x.numel()
    se = (mnist_train.x * (1 - mnist_train.x)).sum().sqrt() / n
    assert abs(a.x.mean() - mnist_train.x.mean()) < 4 * se
    # a pixel that is 0 or 1 in grey levels stays 0 or 1
    sure = (mnist_train.x == 0) | (mnist_train.x == 1)
    assert torch.equal(a.x[sure], mnist_train.x[sure])


def test_dynamic_binarisation_draws_fresh_images(mnist_train):
    d = vaelib.load_mnist("train", binarize="dynamic")
    assert torch.equal(d.x, mnist_train.x), "dynamic data keeps grey levels and binarises per batch"
    first, second = next(d.batches(256)), next(d.batches(256))
    assert set(first[0].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    # averaged over many draws, a binarised pixel approaches its grey level
    torch.manual_seed(0)
    grey = mnist_train.x[:8]
    draws = torch.stack([d[slice(0, 8)][0] for _ in range(2000)]).mean(0)
    assert (draws - grey).abs().max() < 4 * 0.5 / 2000**0.5
    assert torch.equal(draws[grey == 0], grey[grey == 0]) and torch.equal(draws[grey == 1], grey[grey == 1])
    assert first[0].dtype == mnist_train.x.dtype


def test_dynamic_binarisation_draws_what_torch_bernoulli_draws_on_the_cpu(mnist_train):
    d = vaelib.load_mnist("train", binarize="dynamic")
    torch.manual_seed(3)
    ours, after = d[slice(0, 300)][0], torch.rand(4)
    torch.manual_seed(3)
    reference, reference_after = torch.bernoulli(mnist_train.x[:300]), torch.rand(4)
    assert torch.equal(ours, reference)  # so stored outputs do not move when the kernel changes
    assert torch.equal(after, reference_after)  # and the generator is left where torch.bernoulli leaves it


def test_fashion_mnist_loads():
    f = vaelib.load_fashion_mnist("train")
    assert f.x.shape == (60000, 1, 28, 28)
    assert torch.bincount(f.y).tolist() == [6000] * 10
    assert f.classes[0] == "T-shirt/top" and f.classes[9] == "Ankle boot"
    assert 0.0 <= f.x.min() and f.x.max() <= 1.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        vaelib.load_mnist("validation")
    with pytest.raises(ValueError, match="binarize must be one of"):
        vaelib.load_mnist(binarize="threshold")


def test_data_dir_argument_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path / "env"))
    assert vaelib.data_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert vaelib.data_dir() == (tmp_path / "env").resolve()
    monkeypatch.delenv("VAELIB_DATA")
    assert vaelib.data_dir() == DEFAULT_DATA_DIR.expanduser().resolve()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("loader, folder", [(vaelib.load_mnist, "MNIST"), (vaelib.load_fashion_mnist, "FashionMNIST")])
def test_missing_data_without_network_gives_a_clear_error(monkeypatch, tmp_path, no_network, capsys, loader, folder):
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path))
    with pytest.raises(vaelib.DatasetNotFoundError) as info:
        loader("train")
    message = str(info.value)
    assert "VAELIB_DATA" in message
    assert f"{folder}/raw/train-images-idx3-ubyte" in message
    assert str(tmp_path) in message
    assert "download failed" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "Traceback" not in capsys.readouterr().out


def test_missing_data_with_download_off(tmp_path):
    with pytest.raises(FileNotFoundError, match="download disabled"):
        vaelib.load_mnist(root=tmp_path, download=False)


def test_batches_cover_every_example_once():
    x = torch.arange(10.0).view(10, 1)
    data = InMemoryData(x, torch.arange(10))
    torch.manual_seed(0)
    batches = list(data.batches(4, shuffle=True))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert all(torch.equal(b[0][:, 0].long(), b[1]) for b in batches)  # x and y stay paired
    assert [len(b[0]) for b in data.batches(4, drop_last=True)] == [4, 4]
    assert data.num_batches(4) == 3 and data.num_batches(4, drop_last=True) == 2


def test_shuffled_batches_are_the_rows_of_one_permutation():
    """The fast row copy (index_select) gives what plain indexing gives, images and labels alike."""
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10)
    torch.manual_seed(3)
    got = list(InMemoryData(x, y).batches(4, shuffle=True))
    torch.manual_seed(3)
    order = torch.randperm(10)
    for b, (xb, yb) in enumerate(got):
        index = order[4 * b:4 * b + 4]
        assert torch.equal(xb, x[index]) and torch.equal(yb, y[index])


def test_in_memory_data_subset_to_and_errors():
    data = InMemoryData(torch.rand(6, 2), torch.arange(6), binarize="dynamic")
    sub = data.subset([5, 0])
    assert sub.y.tolist() == [5, 0] and sub.binarize == "dynamic" and len(sub) == 2
    assert data.subset(slice(0, 3)).y.tolist() == [0, 1, 2]
    assert data.to("cpu") is data
    only_x = InMemoryData(torch.zeros(3, 2))
    assert len(next(only_x.batches(2))) == 1
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        InMemoryData(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="images to binarise must lie in \\[0, 1\\]"):
        InMemoryData(torch.full((2, 2), 2.0), binarize="dynamic")
    with pytest.raises(ValueError, match="static binarisation is applied once"):
        InMemoryData(torch.zeros(2, 2), binarize="static")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(data.batches(0))


def test_fingerprint_tells_datasets_apart():
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20)
    a = InMemoryData(x, y)
    assert a.fingerprint() == InMemoryData(x.clone(), y.clone()).fingerprint()
    changed = x.clone()
    changed[7, 0, 2, 3] += 1e-6
    others = [InMemoryData(changed, y), InMemoryData(x, y.flip(0)), InMemoryData(x, y, binarize="dynamic"),
              InMemoryData(1 - x, y), a.subset(slice(0, 19)), InMemoryData(x)]
    prints = {a.fingerprint()} | {d.fingerprint() for d in others}
    assert len(prints) == 1 + len(others)


def test_raw_files_are_read_as_torchvision_reads_them_without_importing_it(tmp_path):
    """vaelib reads the IDX files itself (torchvision's import costs seconds); same tensors, same
    class names as torchvision's, and a file that is not IDX is called damaged."""
    import subprocess
    import sys

    import torchvision.datasets as tvd
    from torchvision.datasets.mnist import read_image_file, read_label_file

    from vaelib.data import CLASSES, _read_idx

    assert CLASSES["MNIST"] == tuple(tvd.MNIST.classes)
    assert CLASSES["FashionMNIST"] == tuple(tvd.FashionMNIST.classes)
    raw = vaelib.data_dir() / "MNIST" / "raw"
    if not (raw / "t10k-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST's raw files are not in {raw}")
    images, labels = _read_idx(raw / "t10k-images-idx3-ubyte", 3), _read_idx(raw / "t10k-labels-idx1-ubyte", 1)
    assert torch.equal(images, read_image_file(str(raw / "t10k-images-idx3-ubyte")))
    assert torch.equal(labels.long(), read_label_file(str(raw / "t10k-labels-idx1-ubyte")))
    bad = tmp_path / "bad"
    bad.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))  # says 5 bytes, holds 2
    with pytest.raises(vaelib.data.DamagedDataError, match="holds 2"):
        _read_idx(bad, 1)
    bad.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(vaelib.data.DamagedDataError, match="IDX"):
        _read_idx(bad, 1)
    code = "import sys, vaelib; vaelib.load_mnist('test'); print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
