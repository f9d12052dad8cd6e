"""vaelib: the small, tested library behind the course "Variational Autoencoders from first principles".

Every public name is listed in ``__all__`` below (and in the README); chapters
import nothing else.
"""

from importlib import metadata as _metadata

from .bounds import ELBOTerms, elbo, evaluate_bounds, iwae_bound, kl_per_dimension, log_bernoulli, vae_loss
from .data import (
    DATA_ENV,
    DatasetNotFoundError,
    InMemoryData,
    data_dir,
    load_fashion_mnist,
    load_mnist,
)
from .diagnostics import active_units, latent_statistics
from .device import RunBudget, get_device, run_budget, seed_everything
from .divergences import fit_gaussian, kl_categorical, kl_grid, kl_mvn, kl_normal, mc_kl
from .estimators import (
    GradientStats,
    elbo_surrogate,
    encoder_gradients,
    gradient_stats,
    pathwise_grad,
    quadratic_cost_variances,
    score_function_grad,
)
from .latent import GaussianMixture1D, LinearGaussianModel, ScalarLatentModel, log_normal
from .models import VAE, Autoencoder, DiagonalNormal, load_model, save_model
from .plotting import Table, image_grid, plot_history, show_images
from .metrics import classifier_confidence, interpolation_smoothness, nearest_code_distance
from .training import (
    LinearAnnealing,
    NonFiniteLossError,
    evaluate,
    fit,
    train_mnist_classifier,
    train_mnist_model,
)

try:  # the installed distribution's version (pyproject.toml), so the two cannot disagree
    __version__ = _metadata.version("vaelib")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    # device.py: where and how much to run
    "get_device",
    "seed_everything",
    "run_budget",
    "RunBudget",
    # data.py: MNIST / Fashion-MNIST in memory
    "load_mnist",
    "load_fashion_mnist",
    "data_dir",
    "DATA_ENV",
    "InMemoryData",
    "DatasetNotFoundError",
    # training.py: one loop for every model
    "fit",
    "evaluate",
    "train_mnist_model",
    "train_mnist_classifier",
    "LinearAnnealing",
    "NonFiniteLossError",
    # divergences.py: KL divergences (Chapter 2)
    "kl_normal",
    "kl_mvn",
    "kl_categorical",
    "mc_kl",
    "kl_grid",
    "fit_gaussian",
    # latent.py: tractable latent-variable models (Chapters 1 and 3)
    "log_normal",
    "GaussianMixture1D",
    "ScalarLatentModel",
    "LinearGaussianModel",
    # estimators.py: gradient estimators (Chapter 4)
    "score_function_grad",
    "pathwise_grad",
    "gradient_stats",
    "GradientStats",
    "quadratic_cost_variances",
    "elbo_surrogate",
    "encoder_gradients",
    # models.py: the autoencoder and the VAE
    "Autoencoder",
    "VAE",
    "DiagonalNormal",
    "save_model",
    "load_model",
    # bounds.py: bounds on log p(x)
    "elbo",
    "ELBOTerms",
    "iwae_bound",
    "evaluate_bounds",
    "vae_loss",
    "kl_per_dimension",
    # diagnostics.py: what the latent space is used for (Chapter 8)
    "latent_statistics",
    "active_units",
    "log_bernoulli",
    # metrics.py: comparing generative models (Chapter 7)
    "classifier_confidence",
    "nearest_code_distance",
    "interpolation_smoothness",
    # plotting.py: shared figures and tables
    "image_grid",
    "show_images",
    "plot_history",
    "Table",
]
