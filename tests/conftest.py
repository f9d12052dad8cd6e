import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import vaelib  # noqa: E402


@pytest.fixture(scope="session")
def mnist_train():
    """MNIST training split from the data folder (VAELIB_DATA; .ci/run points it at ../shared/data)."""
    return vaelib.load_mnist("train")


@pytest.fixture(scope="session")
def mnist_test():
    return vaelib.load_mnist("test")
