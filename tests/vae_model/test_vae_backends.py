"""Runs the whole vae_model suite on the JAX backend too.

Keras fixes its backend at import time, so the JAX run needs its own interpreter.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKEND = keras.backend.backend()


@pytest.mark.parametrize("backend", [BACKEND])
def test_running_backend(backend):
    # The parameter puts the backend into the test id, e.g. test_running_backend[jax].
    assert backend in ("tensorflow", "jax")
    assert backend == os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.mark.slow  # the whole vae_model suite again, on JAX (minutes)
@pytest.mark.skipif(BACKEND == "jax", reason="this session already runs on JAX")
def test_suite_passes_on_jax_backend_subprocess():
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    cmd = [
        sys.executable, "-m", "pytest", str(Path(__file__).parent),
        "-k", "not subprocess", "-v", "-p", "no:cacheprovider",
    ]  # fmt: skip
    result = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "test_running_backend[jax] PASSED" in output, output[-5000:]
