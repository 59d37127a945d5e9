"""Device-resident training on JAX: the whole epoch is one compiled call.

Keras' ``fit`` feeds the device one batch at a time from host memory and dispatches one
compiled step per batch (``steps_per_execution`` only loops over such calls in Python). For a
small model on a fast accelerator that host round trip, not the arithmetic, sets the speed.
`fit_resident` puts the training rows on the device once, shuffles them there for each epoch
and runs every step of the epoch inside one ``jax.lax.scan`` of the model's own
``train_step``: the same objective, optimizer and trackers as ``fit``, without the host.

Callbacks are called at epoch granularity (``on_epoch_begin`` / ``on_epoch_end``, and
``on_train_batch_end`` once per epoch with the epoch's logs so that batch-level watchdogs such
as ``TerminateOnNaN`` still see a non-finite loss). Each epoch uses ``rows // batch_size`` full
batches of a permutation drawn from ``(seed, epoch)``; the rows left over are not seen in that
epoch, and a different permutation shows them in the next.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np


def fit_resident(
    model: keras.Model,
    x: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    validation_data: np.ndarray | None = None,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    seed: int = 0,
) -> keras.callbacks.History:
    """Trains a compiled model on rows held in device memory (JAX backend only).

    Args:
        model: A compiled Keras model with a JAX ``train_step`` (e.g. `VAE`).
        x: Packed training rows ``[N, features]`` (they must fit in device memory).
        batch_size: Rows per step (capped at ``N``).
        epochs: Number of epochs (a resumed run starts at the model's initial epoch).
        validation_data: Packed rows evaluated with ``model.evaluate`` after each epoch.
        callbacks: Keras callbacks, called per epoch.
        seed: Seeds each epoch's data order, ``fold_in(PRNGKey(seed), epoch)``.

    Returns:
        The model's ``History``.
    """
    if keras.backend.backend() != "jax":
        raise NotImplementedError(
            f"fit_resident needs KERAS_BACKEND=jax. Received: backend={keras.backend.backend()}"
        )
    if model.optimizer is None:
        raise ValueError("compile the model before fit_resident (it needs the optimizer)")
    import jax

    data = jax.device_put(np.asarray(x, dtype=np.float32))
    batch_size = min(int(batch_size), len(x))
    steps = len(x) // batch_size
    run_epoch = _compiled_epoch(model, batch_size, steps)
    if not model.optimizer.built:  # a second fit_resident call keeps its optimizer state
        model.optimizer.build(model.trainable_variables)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, model=model, epochs=epochs, steps=steps, verbose=0
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    # BackupAndRestore (ResumeTraining) sets the epoch to resume from in on_train_begin.
    for epoch in range(getattr(model, "_initial_epoch", None) or 0, epochs):
        callback_list.on_epoch_begin(epoch)  # e.g. KLWarmup assigns kl_weight here
        key = jax.random.fold_in(jax.random.PRNGKey(seed), epoch)
        state, logs = run_epoch(_state(model), data, key)
        _assign(model, state)
        # One transfer for all the epoch's means (the trackers' results after its last step).
        logs = {name: float(value) for name, value in jax.device_get(logs).items()}
        callback_list.on_train_batch_end(steps - 1, logs)
        if validation_data is not None:
            scores = model.evaluate(
                validation_data, batch_size=batch_size, verbose=0, return_dict=True
            )
            logs.update({f"val_{name}": float(value) for name, value in scores.items()})
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history


def _compiled_epoch(model: keras.Model, batch_size: int, steps: int) -> Any:
    """One jitted epoch: reset the trackers, shuffle on the device, then ``steps`` train
    steps in a scan. Returns the new state and the trackers' epoch means."""
    import jax

    def run(state: tuple, data: Any, key: Any) -> tuple:
        order = jax.random.permutation(key, data.shape[0])[: steps * batch_size]
        batches = data[order].reshape(steps, batch_size, data.shape[1])
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        # Metric variables are sums and counts: zero is their reset (Mean.reset_state).
        metrics_vars = [jax.numpy.zeros_like(v) for v in metrics_vars]
        state = (trainable, non_trainable, optimizer_vars, metrics_vars)

        def step(carry: tuple, batch: Any) -> tuple:
            logs, carry = model.train_step(carry, batch)
            return carry, logs

        state, logs = jax.lax.scan(step, state, batches)
        return state, jax.tree_util.tree_map(lambda value: value[-1], logs)

    # Donating the state lets XLA update weights and optimizer slots in place.
    return jax.jit(run, donate_argnums=0)


def _variable_groups(model: keras.Model) -> tuple[list, list, list, list]:
    # The order of the JAX train_step's state tuple.
    return (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )


def _state(model: keras.Model) -> tuple:
    return tuple([v.value for v in group] for group in _variable_groups(model))


def _assign(model: keras.Model, state: tuple) -> None:
    for group, values in zip(_variable_groups(model), state, strict=True):
        for variable, value in zip(group, values, strict=True):
            variable.assign(value)
