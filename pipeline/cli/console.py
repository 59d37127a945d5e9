"""What a user sees on the console: our messages and progress, not the libraries' start-up
noise (TensorFlow's C++ and CUDA registration lines, absl, Beam's and Google clients'
warnings). Called by the command line before it imports any of them; never at import."""

from __future__ import annotations

import logging
import os
import warnings

# Environment read by TensorFlow and gRPC when they load: 3 drops TF's C++ INFO, WARNING and
# ERROR lines (cuFFT/cuDNN "Unable to register ... factory" are ERROR lines at start-up).
_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
    "ABSL_MIN_LOG_LEVEL": "3",
}
_LOUD_LOGGERS = (
    "apache_beam",
    "tensorflow",
    "absl",
    "tensorflow_data_validation",
    "tfx_bsl",
    "google",
    "jax",
    "h5py",
)


def quiet_libraries() -> None:
    """Silence library start-up noise for this process (user-set variables are kept)."""
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in _LOUD_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    _quiet_absl()


def _quiet_absl() -> None:
    """absl (imported by TensorFlow) logs "Unable to import IPython" style lines through its
    own handler unless its verbosity is lowered once it exists."""
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
