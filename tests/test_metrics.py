import math

import pytest
import torch

import vaelib


class FixedLogits(torch.nn.Module):
    """A 'classifier' that returns given logits, whatever the images."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_classifier_confidence_counts_and_spreads():
    sure = 10.0
    logits = torch.zeros(4, 3)
    logits[0, 0] = logits[1, 1] = logits[2, 1] = sure  # three confident (classes 0, 1, 1), one uniform
    r = vaelib.classifier_confidence(FixedLogits(logits), torch.zeros(4, 1, 2, 2), threshold=0.9)
    assert r["confident"] == 0.75
    assert torch.allclose(r["class_share"], torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64))
    assert r["class_entropy"] == pytest.approx(-(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3))
    with pytest.raises(ValueError, match="threshold must lie in"):
        vaelib.classifier_confidence(FixedLogits(logits), torch.zeros(4, 1, 2, 2), threshold=1.5)


def test_nearest_code_distance_is_scale_free():
    codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # spacing 1
    points = torch.tensor([[1.0, 0.0], [1.5, 0.0], [3.0, 4.0]])
    assert torch.allclose(vaelib.nearest_code_distance(points, codes), torch.tensor([0.0, 0.5, 4.0]))
    assert torch.allclose(vaelib.nearest_code_distance(10 * points, 10 * codes), torch.tensor([0.0, 0.5, 4.0]))
    with pytest.raises(ValueError, match="at least 2 codes"):
        vaelib.nearest_code_distance(points, codes[:1])
    with pytest.raises(ValueError, match=r"\(M, d\) and \(N, d\)"):
        vaelib.nearest_code_distance(points, torch.zeros(4, 3))


def test_interpolation_smoothness_is_one_for_an_even_path_and_large_for_a_jump():
    z_a, z_b = torch.zeros(2, 1), torch.ones(2, 1)
    linear = vaelib.interpolation_smoothness(lambda z: z.expand(*z.shape[:-1], 5), z_a, z_b, steps=10)
    assert torch.allclose(linear, torch.ones(2))
    jump = vaelib.interpolation_smoothness(lambda z: (z > 0.5).float().expand(*z.shape[:-1], 5), z_a, z_b, steps=10)
    assert torch.allclose(jump, torch.full((2,), 10.0))  # all change happens in one of 10 steps
    with pytest.raises(ValueError, match="one shape"):
        vaelib.interpolation_smoothness(lambda z: z, z_a, torch.ones(3, 1))


def test_pixel_entropy_matches_torch_distributions_and_orders_blur():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 4, 4, generator=g)
    images[0] = (images[0] > 0.5).float()  # a sharp image: entropy 0
    want = torch.distributions.Bernoulli(probs=images.flatten(1).double()).entropy().mean(1)
    got = vaelib.pixel_entropy(images)
    assert torch.allclose(got.double(), want, atol=1e-6) and got[0] == 0
    assert vaelib.pixel_entropy(torch.full((1, 3), 0.5)).item() == pytest.approx(math.log(2))
    blurred = 0.5 * images[1:2] + 0.25  # pulled towards 0.5: blurrier
    assert vaelib.pixel_entropy(blurred) > vaelib.pixel_entropy(images[1:2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vaelib.pixel_entropy(images + 1)


def test_bits_per_dim_of_a_uniform_density_is_eight_bits():
    assert vaelib.bits_per_dim(0.0) == pytest.approx(8.0)
    assert vaelib.bits_per_dim(torch.zeros(3), n_dims=10, levels=4).tolist() == pytest.approx([2.0] * 3)
    with pytest.raises(ValueError, match="levels >= 2"):
        vaelib.bits_per_dim(0.0, levels=1)


def test_bits_per_dim_of_a_histogram_density_is_the_discrete_entropy_rate():
    """A density constant on each bin (P(k) * levels) gives back -log2 P(k) exactly, for every u."""
    g = torch.Generator().manual_seed(0)
    levels, n_dims = 8, 3
    probs = torch.rand(n_dims, levels, generator=g, dtype=torch.float64)
    probs /= probs.sum(1, keepdim=True)  # an independent categorical per pixel
    k = torch.randint(0, levels, (500, n_dims), generator=g)
    torch.manual_seed(1)
    y = vaelib.dequantize(k.double() / (levels - 1), levels=levels)  # (500, 3) in [0, 1)
    assert ((y * levels).floor() == k).all()  # each value stays in its own bin
    log_density = (probs.gather(1, (y * levels).floor().long().T).T * levels).log().sum(1)
    exact_bits = -(probs.gather(1, k.T).T.log2()).sum(1) / n_dims
    assert torch.allclose(vaelib.bits_per_dim(log_density, n_dims=n_dims, levels=levels), exact_bits)


def test_dequantized_data_is_fresh_each_batch_and_stays_in_the_pixels_bins():
    x = torch.randint(0, 256, (50, 1, 2, 2)).float() / 255
    data = vaelib.InMemoryData(x, dequantize=True)
    (a,), (b,) = next(data.batches(50)), next(data.batches(50))
    assert not torch.equal(a, b)
    assert torch.equal((a * 256).floor(), (x * 255).round()) and torch.equal((b * 256).floor(), (x * 255).round())
    assert data.fingerprint() != vaelib.InMemoryData(x).fingerprint()
    assert data.subset([0, 1]).dequantize and data.to("cpu").dequantize
    with pytest.raises(ValueError, match="cannot be combined with binarisation"):
        vaelib.InMemoryData(x, binarize="dynamic", dequantize=True)
    with pytest.raises(ValueError, match="images to dequantize must be numbers in \\[0, 1\\]; 1 are NaN"):
        vaelib.dequantize(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="images to dequantize must lie in \\[0, 1\\]"):
        vaelib.InMemoryData(x * 2, dequantize=True)  # checked once, when the data are made


def test_dequantized_batches_read_no_values_back_from_the_device():
    data = vaelib.InMemoryData(torch.randint(0, 256, (6, 1, 2, 2)).float() / 255, dequantize=True)
    data.x = data.x.to("meta")  # any read-back of values fails on the meta device
    (batch,) = next(data.batches(3))
    assert batch.shape == (3, 1, 2, 2) and batch.device.type == "meta"
