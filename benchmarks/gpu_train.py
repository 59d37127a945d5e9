"""GPU training throughput: vaepipe's VAE (vae_model.VAE, Keras 3 on JAX) against a hand-written
jitted JAX step and a PyTorch eager loop of the same shapes, in the same run.

Self-contained for a machine with one NVIDIA GPU, JAX with CUDA and PyTorch, but no TensorFlow:
it needs only numpy, jax, keras (with namex and optree, e.g. carried as wheels), torch and this
repository's `vae_model` package. It forces `KERAS_BACKEND=jax` and fails (exit 1) if tensorflow,
apache_beam, TFDV or vaepipe's `pipeline` package got imported, so a run on a machine that has
TensorFlow installed (like the CPU development machine) still proves vae_model does not need it.

Model (all three): packed input [B, 128] (64 numeric values + their observed mask), encoder
128-256-128 -> 16 means + 16 log-variances, decoder 16-128-256 -> 64 means + 64 log-variances
(Gaussian likelihood, log-variances clamped to [-6, 6]), loss = masked NLL + KL, Adam 1e-3.
Throughput = rows per second over the steady epochs (the first epoch, with compilation, is not
counted). vaepipe's VAE runs three ways: Keras' `fit` (host-fed batches) with one step per
compiled call, `fit` with `steps_per_execution` > 1 (the VAE fuses those steps in one lax.scan),
and `vae_model.resident.fit_resident` (rows on the device, each epoch one compiled call). The
hand-written JAX step runs one jitted call per step, and with the whole epoch in one lax.scan.

    python benchmarks/gpu_train.py                      # batch sizes 1,024, 8,192 and 65,536
    python benchmarks/gpu_train.py --quick              # tiny sizes, any machine (CPU is fine)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FEATURES, HIDDEN, LATENT = 64, (256, 128), 16
MIN_LOG_VAR, MAX_LOG_VAR = -6.0, 6.0
LEARNING_RATE = 1e-3
FORBIDDEN = ("tensorflow", "apache_beam", "tensorflow_data_validation", "tfx_bsl", "pipeline")


def forbidden_imports() -> list[str]:
    """The FORBIDDEN top-level packages that are imported in this process."""
    return sorted({name.split(".")[0] for name in sys.modules} & set(FORBIDDEN))


def synthetic(rows: int, seed: int = 0) -> np.ndarray:
    """Packed float32 rows: 64 correlated Gaussian features from 8 factors, mask all ones."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((rows, 8)).astype(np.float32)
    mixing = rng.standard_normal((8, FEATURES)).astype(np.float32) / np.sqrt(8)
    values = factors @ mixing + 0.3 * rng.standard_normal((rows, FEATURES)).astype(np.float32)
    # float32 at the end: under NumPy 2's promotion rules a float64 scalar upcasts the array.
    return np.concatenate([values, np.ones_like(values)], axis=1).astype(np.float32)


def steady_rows_per_s(epoch_ends: list[float], rows: int) -> float:
    """Rows/s from epoch end times (the first entry is the start; epoch 1 is skipped)."""
    spans = np.diff(epoch_ends)
    spans = spans[1:] if len(spans) > 1 else spans
    return rows / float(np.median(spans))


# ---------------------------------------------------------------- vaepipe's VAE (Keras on JAX)
def _vaepipe_model(steps_per_execution: int = 1):
    import keras

    from vae_model import VAE, FeatureLayout

    # Seeded through the VAE (not keras.utils.set_random_seed, which imports TF when present).
    layout = FeatureLayout(numeric=tuple(f"f{j}" for j in range(FEATURES)))
    model = VAE(layout=layout.to_config(), latent_dim=LATENT, hidden_units=HIDDEN,
                min_log_var=MIN_LOG_VAR, max_log_var=MAX_LOG_VAR, seed=0)  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE), steps_per_execution=steps_per_execution
    )
    return model


def _epoch_clock(ends: list[float]):
    """A callback recording epoch end times, after the epoch's work really finished."""
    import keras

    def on_epoch_end(epoch, logs):
        float(logs["loss"])  # JAX dispatches asynchronously: wait for the epoch's result
        ends.append(time.perf_counter())

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def keras_vae(x: np.ndarray, batch: int, epochs: int, steps_per_execution: int) -> float:
    """vae_model.VAE trained with Keras' own fit loop (host-fed batches) on the JAX backend.

    With steps_per_execution > 1 the VAE's train function runs that many steps in one
    compiled lax.scan (vae_model.steps.JaxSteps.make_train_function).
    """
    model = _vaepipe_model(steps_per_execution)
    ends = [time.perf_counter()]
    model.fit(x, batch_size=batch, epochs=epochs + 1, verbose=0, callbacks=[_epoch_clock(ends)])
    return steady_rows_per_s(ends, len(x))


def keras_vae_resident(x: np.ndarray, batch: int, epochs: int) -> float:
    """vae_model.VAE trained by vae_model.resident.fit_resident: rows on the device, each
    epoch one compiled call (a lax.scan over the VAE's own train_step)."""
    from vae_model.resident import fit_resident

    model = _vaepipe_model()
    ends = [time.perf_counter()]
    fit_resident(model, x, batch_size=batch, epochs=epochs + 1, callbacks=[_epoch_clock(ends)])
    return steady_rows_per_s(ends, (len(x) // batch) * batch)


# ------------------------------------------------------------------- hand-written JAX (jit)
def _glorot(key, fan_in: int, fan_out: int):
    import jax

    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, (fan_in, fan_out), minval=-limit, maxval=limit)


def _jax_params(seed: int = 0) -> dict:
    import jax
    import jax.numpy as jnp

    shapes = {
        "e1": (2 * FEATURES, HIDDEN[0]), "e2": (HIDDEN[0], HIDDEN[1]),
        "zm": (HIDDEN[1], LATENT), "zv": (HIDDEN[1], LATENT),
        "d1": (LATENT, HIDDEN[1]), "d2": (HIDDEN[1], HIDDEN[0]),
        "xm": (HIDDEN[0], FEATURES), "xv": (HIDDEN[0], FEATURES),
    }  # fmt: skip
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return {
        name: {"w": _glorot(key, *shape), "b": jnp.zeros(shape[1])}
        for key, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def _jax_loss(params: dict, x, key):
    import jax
    import jax.numpy as jnp

    def dense(name, h):
        return h @ params[name]["w"] + params[name]["b"]

    values, mask = x[:, :FEATURES], x[:, FEATURES:]
    h = jax.nn.relu(dense("e2", jax.nn.relu(dense("e1", x))))
    z_mean, z_log_var = dense("zm", h), jnp.clip(dense("zv", h), MIN_LOG_VAR, MAX_LOG_VAR)
    z = z_mean + jnp.exp(0.5 * z_log_var) * jax.random.normal(key, z_mean.shape)
    h = jax.nn.relu(dense("d2", jax.nn.relu(dense("d1", z))))
    mu, log_var = dense("xm", h), jnp.clip(dense("xv", h), MIN_LOG_VAR, MAX_LOG_VAR)
    nll = 0.5 * (math.log(2 * math.pi) + log_var + (values - mu) ** 2 * jnp.exp(-log_var))
    kl = 0.5 * jnp.sum(jnp.exp(z_log_var) + z_mean**2 - 1.0 - z_log_var, axis=-1)
    return jnp.mean(jnp.sum(nll * mask, axis=-1) + kl)


def _adam_step() -> Callable:
    """One Adam step, not compiled: (params, m, v, t, x, key) -> (params, m, v, loss)."""
    import jax
    import jax.numpy as jnp

    b1, b2, eps = 0.9, 0.999, 1e-7

    def step(params, m, v, t, x, key):
        loss, grads = jax.value_and_grad(_jax_loss)(params, x, key)
        m = jax.tree_util.tree_map(lambda a, g: b1 * a + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda a, g: b2 * a + (1 - b2) * g * g, v, grads)
        scale = LEARNING_RATE * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree_util.tree_map(
            lambda p, a, b: p - scale * a / (jnp.sqrt(b) + eps), params, m, v
        )
        return params, m, v, loss

    return step


def _jax_step() -> Callable:
    """The Adam step, jitted, its state buffers donated."""
    import jax

    return jax.jit(_adam_step(), donate_argnums=(0, 1, 2))


def jax_hand(x: np.ndarray, batch: int, epochs: int) -> float:
    """The same model and Adam as a hand-written jitted step; data resident on the device."""
    import jax
    import jax.numpy as jnp

    params = _jax_params()
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    step, data, key = _jax_step(), jnp.asarray(x), jax.random.PRNGKey(1)
    steps = len(x) // batch
    ends, t = [time.perf_counter()], 0
    for _ in range(epochs + 1):
        key, shuffle = jax.random.split(key)
        shuffled = data[jax.random.permutation(shuffle, len(x))]
        for i in range(steps):
            key, noise = jax.random.split(key)
            t += 1
            params, m, v, loss = step(params, m, v, t, shuffled[i * batch : (i + 1) * batch], noise)
        loss.block_until_ready()
        ends.append(time.perf_counter())
    return steady_rows_per_s(ends, steps * batch)


def jax_hand_fused(x: np.ndarray, batch: int, epochs: int) -> float:
    """The hand-written step with the whole epoch fused in one jitted lax.scan."""
    import jax
    import jax.numpy as jnp

    step, steps = _adam_step(), len(x) // batch

    def epoch(carry, data, key):
        params, m, v, t = carry
        shuffle, key = jax.random.split(key)
        order = jax.random.permutation(shuffle, data.shape[0])[: steps * batch]
        batches = data[order].reshape(steps, batch, data.shape[1])

        def body(carry, xb):
            params, m, v, t, key = carry
            key, noise = jax.random.split(key)
            params, m, v, loss = step(params, m, v, t + 1, xb, noise)
            return (params, m, v, t + 1, key), loss

        (params, m, v, t, _), losses = jax.lax.scan(body, (params, m, v, t, key), batches)
        return (params, m, v, t), losses[-1]

    run = jax.jit(epoch, donate_argnums=0)
    params = _jax_params()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = (params, zeros, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.float32(0))
    data, key, ends = jnp.asarray(x), jax.random.PRNGKey(1), [time.perf_counter()]
    for e in range(epochs + 1):
        carry, loss = run(carry, data, jax.random.fold_in(key, e))
        loss.block_until_ready()
        ends.append(time.perf_counter())
    return steady_rows_per_s(ends, steps * batch)


# ------------------------------------------------------------------------- PyTorch eager
def torch_eager(x: np.ndarray, batch: int, epochs: int) -> float:
    """The same model and Adam as a PyTorch eager loop; data resident on the device."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":  # --quick on a small shared CPU: more threads ran far slower
        torch.set_num_threads(1)

    def mlp(*widths: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers)

    encoder, decoder = mlp(2 * FEATURES, *HIDDEN).to(device), mlp(LATENT, *HIDDEN[::-1]).to(device)
    heads = nn.ModuleDict({
        "zm": nn.Linear(HIDDEN[1], LATENT), "zv": nn.Linear(HIDDEN[1], LATENT),
        "xm": nn.Linear(HIDDEN[0], FEATURES), "xv": nn.Linear(HIDDEN[0], FEATURES),
    }).to(device)  # fmt: skip
    params = [*encoder.parameters(), *decoder.parameters(), *heads.parameters()]
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE, eps=1e-7)
    data = torch.from_numpy(x).to(device)
    steps = len(x) // batch

    def loss_of(xb):
        values, mask = xb[:, :FEATURES], xb[:, FEATURES:]
        h = encoder(xb)
        z_mean, z_log_var = heads["zm"](h), heads["zv"](h).clamp(MIN_LOG_VAR, MAX_LOG_VAR)
        z = z_mean + torch.exp(0.5 * z_log_var) * torch.randn_like(z_mean)
        h = decoder(z)
        mu, log_var = heads["xm"](h), heads["xv"](h).clamp(MIN_LOG_VAR, MAX_LOG_VAR)
        nll = 0.5 * (math.log(2 * math.pi) + log_var + (values - mu) ** 2 * torch.exp(-log_var))
        kl = 0.5 * (torch.exp(z_log_var) + z_mean**2 - 1.0 - z_log_var).sum(-1)
        return ((nll * mask).sum(-1) + kl).mean()

    ends = [time.perf_counter()]
    for _ in range(epochs + 1):
        order = torch.randperm(len(x), device=device)
        for i in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss_of(data[order[i * batch : (i + 1) * batch]]).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return steady_rows_per_s(ends, steps * batch)


# ------------------------------------------------------------------------------ driver
def devices() -> str:
    import jax

    line = f"JAX {jax.__version__} devices {[str(d) for d in jax.devices()]}"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
        line += f"; torch {torch.__version__} ({gpu})"
    except ImportError:
        line += "; torch not installed"
    return line


def table(rows: list[dict]) -> str:
    """A markdown table (no pandas: it may not be on the GPU machine)."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("--:" for _ in header) + "|"]
    for row in rows:
        cells = [f"{v:,.0f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 8192, 65536])
    parser.add_argument("--rows", type=int, default=1_048_576, help="rows per epoch")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (after one warm-up)")
    parser.add_argument("--steps-per-execution", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--no-torch", dest="torch", action="store_false")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="8,192 rows, batches 256 and 1,024")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.batch_sizes, args.epochs = 8192, [256, 1024], 2
        args.steps_per_execution = [1, 4]
    return args


def methods(args: argparse.Namespace) -> dict[str, Callable[[np.ndarray, int], float]]:
    """Column title -> f(x, batch) giving training rows/s."""
    table: dict[str, Callable[[np.ndarray, int], float]] = {}
    for spe in args.steps_per_execution:
        table[f"vaepipe VAE: Keras fit, spe={spe}"] = lambda x, b, spe=spe: keras_vae(
            x, b, args.epochs, spe
        )
    table["vaepipe VAE: fit_resident"] = lambda x, b: keras_vae_resident(x, b, args.epochs)
    table["hand-written JAX (jit step)"] = lambda x, b: jax_hand(x, b, args.epochs)
    table["hand-written JAX (epoch in lax.scan)"] = lambda x, b: jax_hand_fused(x, b, args.epochs)
    if args.torch:
        table["PyTorch eager"] = lambda x, b: torch_eager(x, b, args.epochs)
    return table


def measure(run: Callable[[], float]) -> float | str:
    """Runs one measurement; a failure is reported in the table instead of ending the run."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001: one broken method must not lose the others
        traceback.print_exc()
        return f"failed: {type(err).__name__}"


def main() -> None:
    args = parse_args()
    if os.environ.get("KERAS_BACKEND", "jax") != "jax":
        sys.exit("gpu_train.py runs Keras on JAX: unset KERAS_BACKEND or set it to jax")
    os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, str(ROOT))
    print(f"machine: {platform.node()}, {os.cpu_count()} CPU cores; {devices()}", flush=True)
    x = synthetic(args.rows)
    rows = []
    for batch in args.batch_sizes:
        row: dict = {"batch": f"{batch:,}"}
        for name, run in methods(args).items():
            row[name] = measure(lambda run=run, batch=batch: run(x, batch))
            print(f"batch {batch:,}: {name}: {row[name]}", file=sys.stderr, flush=True)
        rows.append(row)
    print(f"\ntraining rows/s, {args.rows:,} rows per epoch, median of {args.epochs} epochs:\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"devices": devices(), "rows": rows}, indent=1))
    leaked = forbidden_imports()
    print(f"\nforbidden modules imported: {leaked or 'none'}")
    if leaked:
        sys.exit(1)


if __name__ == "__main__":
    main()
