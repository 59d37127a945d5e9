"""Backend-specific ``train_step`` / ``test_step`` / ``predict_step`` for the VAE.

Keras 3 trainers differ in the step signature: TensorFlow steps are stateful
(``step(data) -> logs``) while JAX steps are pure functions of explicit state
(``step(state, data) -> (logs, state)``). Only that plumbing lives here; the forward
pass is ``VAE.call`` and all of the ELBO math is in ``losses.py``.

Both step flavours rely on these ``VAE`` members: ``call(x, training, stochastic)``
returning the terms dict, ``effective_beta(kl_weight)``, ``update_trackers(terms,
beta)``, ``kl_weight`` and the ``metrics`` trackers.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from vae_model import losses


def inputs_from_data(data: Any) -> Any:
    """Extracts the packed input from a batch: ``x``, ``(x,)`` or ``(x, y[, w])``.

    Targets and sample weights are ignored: the model reconstructs its own input.
    """
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return ops.cast(x, "float32")


class TensorFlowSteps:
    """Steps for the TensorFlow trainer (GradientTape, stateful variables)."""

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        x = inputs_from_data(data)
        # Reading the variable inside the traced step keeps KL warm-up live across
        # epochs (the tf.function reads the variable, it does not bake its value).
        beta = self.effective_beta(self.kl_weight)
        with tf.GradientTape() as tape:
            terms = self(x, training=True)
            active = self.trim_active(self.kl_weight)
            loss = losses.training_loss(terms, beta, self.trim_fraction, active)
            # No-op for plain optimizers; required for LossScaleOptimizer (mixed
            # precision), whose apply() unscales the gradients again.
            scaled_loss = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled_loss, self.trainable_weights)
        if not self.skip_nonfinite:
            self.optimizer.apply(grads, self.trainable_weights)
            return self.update_trackers(terms, beta)

        def apply() -> Any:
            self.optimizer.apply(grads, self.trainable_weights)
            return tf.constant(True)

        # A non-finite batch leaves weights and optimizer state untouched (not even momentum).
        tf.cond(_all_finite(loss, grads), apply, lambda: tf.constant(False))
        return self.update_trackers(terms, beta)

    def test_step(self, data: Any) -> dict[str, Any]:
        x = inputs_from_data(data)
        beta = self.effective_beta(self.kl_weight)
        # Same sampled ELBO estimator as training so val_* and train numbers compare.
        terms = self(x, training=False, stochastic=True)
        return self.update_trackers(terms, beta)

    def predict_step(self, data: Any) -> dict[str, Any]:
        return self(inputs_from_data(data), training=False)


class JaxSteps:
    """Steps for the JAX trainer (pure functions of explicit state, jit-compiled)."""

    def train_step(self, state: tuple, data: Any) -> tuple[dict[str, Any], tuple]:
        import jax

        trainable, non_trainable, optimizer_vars, metrics_vars = state
        x = inputs_from_data(data)
        # Must come from `state`: reading `self.kl_weight` here would bake the value
        # at trace time into the jitted step and freeze the warm-up schedule.
        kl_weight = _state_value(self, self.kl_weight, non_trainable)
        beta = self.effective_beta(kl_weight)

        def loss_fn(trainable, non_trainable):
            terms, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
            active = self.trim_active(kl_weight)
            loss = losses.training_loss(terms, beta, self.trim_fraction, active)
            return _stateless_scale_loss(self, loss, optimizer_vars), (terms, non_trainable)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (terms, non_trainable)), grads = grad_fn(trainable, non_trainable)
        new_trainable, new_optimizer_vars = self.optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        if self.skip_nonfinite:
            # A non-finite batch leaves weights and optimizer state untouched.
            keep = _all_finite(loss, grads)
            new_trainable = _select(keep, new_trainable, trainable)
            new_optimizer_vars = _select(keep, new_optimizer_vars, optimizer_vars)
        trainable, optimizer_vars = new_trainable, new_optimizer_vars
        logs, metrics_vars = _stateless_update_trackers(self, metrics_vars, terms, beta)
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)

    def make_train_function(self, force: bool = False) -> None:
        """Keras' JAX train function, with ``steps_per_execution`` steps fused in one call.

        Keras' own JAX trainer runs ``steps_per_execution`` compiled steps in a Python loop,
        one dispatch each. Here equal-shaped batches are stacked and run in one jitted
        ``lax.scan``, so the lever does cut per-step overhead; a ragged group (the end of
        an epoch) falls back to one compiled step per batch.
        """
        if self.steps_per_execution == 1 or self.run_eagerly or not self.jit_compile:
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return None
        import jax

        def scanned(state: tuple, stacked: Any) -> tuple:
            def body(carry: tuple, batch: Any) -> tuple:
                logs, carry = self.train_step(carry, batch)
                return carry, logs

            state, logs = jax.lax.scan(body, state, stacked)
            return jax.tree_util.tree_map(lambda value: value[-1], logs), state

        fused = jax.jit(scanned, donate_argnums=0)
        single = jax.jit(self.train_step, donate_argnums=0)

        def iterator_step(state: tuple, iterator: Any) -> tuple:
            batches = _take(iterator, self.steps_per_execution)
            shapes = {tuple(leaf.shape for leaf in jax.tree_util.tree_leaves(b)) for b in batches}
            if len(batches) == self.steps_per_execution and len(shapes) == 1:
                return fused(state, jax.tree_util.tree_map(lambda *b: jax.numpy.stack(b), *batches))
            logs = None
            for batch in batches:
                logs, state = single(state, batch)
            return logs, state

        self.train_function = iterator_step
        return None

    def test_step(self, state: tuple, data: Any) -> tuple[dict[str, Any], tuple]:
        trainable, non_trainable, metrics_vars = state
        x = inputs_from_data(data)
        beta = self.effective_beta(_state_value(self, self.kl_weight, non_trainable))
        terms, non_trainable = self.stateless_call(
            trainable, non_trainable, x, training=False, stochastic=True
        )
        logs, metrics_vars = _stateless_update_trackers(self, metrics_vars, terms, beta)
        return logs, (trainable, non_trainable, metrics_vars)

    def predict_step(self, state: tuple, data: Any) -> tuple[dict[str, Any], list]:
        trainable, non_trainable = state
        outputs, non_trainable = self.stateless_call(
            trainable, non_trainable, inputs_from_data(data), training=False
        )
        return outputs, non_trainable


def _take(iterator: Any, count: int) -> list:
    """Up to ``count`` items from ``iterator``; raises StopIteration only if there are none."""
    items = [next(iterator)]
    for _ in range(count - 1):
        try:
            items.append(next(iterator))
        except StopIteration:
            break
    return items


def _all_finite(loss: Any, grads: list) -> Any:
    """True when the loss and every gradient are finite (a scalar boolean tensor)."""
    checks = [ops.all(ops.isfinite(loss))] + [ops.all(ops.isfinite(g)) for g in grads]
    return ops.all(ops.stack(checks))


def _select(keep: Any, new: list, old: list) -> list:
    return [ops.where(keep, n, o) for n, o in zip(new, old, strict=True)]


def _state_value(model: keras.Model, variable: keras.Variable, non_trainable: list) -> Any:
    """Returns the value that explicit JAX state holds for a non-trainable variable."""
    for ref, value in zip(model.non_trainable_variables, non_trainable, strict=True):
        if ref is variable:
            return value
    raise KeyError(f"{variable.path} is not a non-trainable variable of {model.name}")


def _stateless_scale_loss(model: keras.Model, loss: Any, optimizer_vars: list) -> Any:
    """``optimizer.scale_loss`` with the loss-scale variable taken from explicit state."""
    mapping = list(zip(model.optimizer.variables, optimizer_vars, strict=True))
    with keras.StatelessScope(state_mapping=mapping):
        return model.optimizer.scale_loss(loss)


def _stateless_update_trackers(
    model: keras.Model, metrics_vars: list, terms: dict[str, Any], beta: Any
) -> tuple[dict[str, Any], list]:
    """Runs the ordinary stateful tracker update inside a StatelessScope.

    This is what Keras' own JAX trainer does; it lets both backends share
    ``update_trackers`` instead of hand-writing ``stateless_update_state`` calls.
    """
    refs = model.metrics_variables
    with keras.StatelessScope(state_mapping=list(zip(refs, metrics_vars, strict=True))) as scope:
        logs = model.update_trackers(terms, beta)
    new_vars = []
    for ref, old in zip(refs, metrics_vars, strict=True):
        new = scope.get_current_value(ref)
        new_vars.append(old if new is None else new)
    return logs, new_vars
