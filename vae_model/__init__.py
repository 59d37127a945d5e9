"""vaepipe model core: a mixed-type Variational Autoencoder for Keras 3.

Public API::

    FeatureLayout, pack, unpack, validate_packed     # input contract (layout.py)
    VAE                                              # the model (model.py)
    KLWarmup, EpochTermsLogger, fit_vae              # training glue (training.py)
    fit_resident                                     # JAX: an epoch per call (resident.py)
    likelihoods, losses                              # the math, pure keras.ops

Works on the TensorFlow and JAX backends (``KERAS_BACKEND``).
"""

from vae_model import likelihoods, losses
from vae_model.layout import FeatureLayout, pack, unpack, validate_packed
from vae_model.model import VAE
from vae_model.resident import fit_resident
from vae_model.training import EpochTermsLogger, KLWarmup, fit_vae

__all__ = [
    "EpochTermsLogger",
    "FeatureLayout",
    "KLWarmup",
    "VAE",
    "fit_resident",
    "fit_vae",
    "likelihoods",
    "losses",
    "pack",
    "unpack",
    "validate_packed",
]
