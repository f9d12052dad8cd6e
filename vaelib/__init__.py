"""vaelib: the small, tested library behind the course "Variational Autoencoders from first principles".

Every public name is listed in ``__all__`` below (and in vaelib/README.md); chapters
import nothing else.
"""

from . import startup

startup.guard()  # first, before torch loads: in the vaelib command, Ctrl-C now is one line and exit code 130

from .conditional import M2, ConditionalVAE, conditional_elbo, labelled_subset, m2_loss
from .data import (
    DATA_ENV,
    DatasetNotFoundError,
    InMemoryData,
    data_dir,
    dequantize,
    load_fashion_mnist,
    load_mnist,
)
from .device import RunBudget, describe_device, get_device, run_budget, seed_everything
from .divergences import fit_gaussian, kl_categorical, kl_grid, kl_mvn, kl_normal, kl_normal_per_dim, mc_kl
from .estimators import (
    GradientStats,
    elbo_surrogate,
    encoder_gradients,
    gradient_snr,
    gradient_stats,
    pathwise_grad,
    quadratic_cost_variances,
    score_function_grad,
)
from .gaps import elbo_of, inference_gaps, optimise_local_posterior
from .latent_space import active_units, interpolate, latent_grid, latent_statistics
from .loop import LinearAnnealing, NonFiniteLossError, evaluate, fit
from .metrics import (
    bits_per_dim,
    classifier_confidence,
    interpolation_smoothness,
    nearest_code_distance,
    pixel_entropy,
)
from .models import VAE, Autoencoder, DiagonalNormal, load_model, save_model
from .objectives import ELBOTerms, elbo, evaluate_bounds, importance_weights, iwae_bound, iwae_loss, vae_loss
from .plotting import Table, image_grid, plot_codes, plot_history, show_images, smallest_text_px, use_book_style
from .recipes import RUNS_ENV, runs_dir, train_mnist_classifier, train_mnist_model
from .recipes import train_conditional_vae, train_label_classifier, train_m2
from .tractable import GaussianMixture1D, LinearGaussianModel, ScalarLatentModel, log_normal
from . import exercises
from .version import __version__

__all__ = [
    # device.py: where and how much to run
    "describe_device",
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
    "dequantize",
    # loop.py: one training loop for every model
    "fit",
    "evaluate",
    "LinearAnnealing",
    "NonFiniteLossError",
    # recipes.py: the course's trained models, cached by their whole configuration
    "train_mnist_model",
    "train_mnist_classifier",
    "runs_dir",
    "RUNS_ENV",
    "train_conditional_vae",
    "train_m2",
    "train_label_classifier",
    # divergences.py: KL divergences (Chapter 2)
    "kl_normal",
    "kl_normal_per_dim",
    "kl_mvn",
    "kl_categorical",
    "mc_kl",
    "kl_grid",
    "fit_gaussian",
    # tractable.py: latent-variable models with exact answers (Chapters 1 and 3)
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
    "gradient_snr",
    # models.py: the autoencoder and the VAE
    "Autoencoder",
    "VAE",
    "DiagonalNormal",
    "save_model",
    "load_model",
    # conditional.py: models with a label, the conditional VAE and M2 (Chapter 9)
    "ConditionalVAE",
    "conditional_elbo",
    "M2",
    "m2_loss",
    "labelled_subset",
    # objectives.py: what a VAE is trained on and judged by
    "elbo",
    "ELBOTerms",
    "vae_loss",
    "iwae_bound",
    "evaluate_bounds",
    "importance_weights",
    "iwae_loss",
    # gaps.py: where the ELBO loses to log p(x), approximation and amortisation (Chapter 10)
    "optimise_local_posterior",
    "elbo_of",
    "inference_gaps",
    # latent_space.py: walking the code space, and what it is used for (Chapters 5 to 8)
    "interpolate",
    "latent_grid",
    "latent_statistics",
    "active_units",
    # metrics.py: comparing generative models (Chapter 7)
    "classifier_confidence",
    "nearest_code_distance",
    "interpolation_smoothness",
    "pixel_entropy",
    "bits_per_dim",
    # plotting.py: shared figures and tables
    "image_grid",
    "show_images",
    "plot_codes",
    "plot_history",
    "Table",
    "use_book_style",
    "smallest_text_px",
    # exercises.py: checks for the chapters' exercises
    "exercises",
]
