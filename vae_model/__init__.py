"""vaepipe model core: a mixed-type Variational Autoencoder for Keras 3.

Public API::

    FeatureLayout, pack, unpack, validate_packed     # input contract (layout.py)
    VAE                                              # the model (model.py)
    KLWarmup, EpochTermsLogger, fit_vae              # training glue (training.py)
    fit_resident                                     # JAX: an epoch per call (resident.py)
    likelihoods, losses                              # the math, pure keras.ops

Works on the TensorFlow and JAX backends (``KERAS_BACKEND``).
"""

import importlib
from typing import Any

# Where each public name lives. Loaded on first use (PEP 562), so that importing
# `vae_model.layout` (the packed-input contract the pipeline encodes to) does not import Keras.
_EXPORTS = {
    "EpochTermsLogger": "vae_model.training",
    "FeatureLayout": "vae_model.layout",
    "KLWarmup": "vae_model.training",
    "VAE": "vae_model.model",
    "fit_resident": "vae_model.resident",
    "fit_vae": "vae_model.training",
    "likelihoods": "vae_model.likelihoods",
    "losses": "vae_model.losses",
    "pack": "vae_model.layout",
    "unpack": "vae_model.layout",
    "validate_packed": "vae_model.layout",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vae_model' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__.endswith(f".{name}") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
