"""Training loop glue: KL warm-up, per-epoch logging, early stopping, checkpoints."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import keras

from vae_model import losses
from vae_model.resident import fit_resident
from vae_model.resume import ResumeTraining

BEST_MODEL_FILENAME = "best.keras"
# ModelCheckpoint writes here during training; promoted to best.keras only on success
# so a diverged run never leaves a model that looks usable.
IN_PROGRESS_FILENAME = "best.inprogress.keras"


class KLWarmup(keras.callbacks.Callback):
    """Ramps the model's ``kl_weight`` to 1 over ``kl_warmup_epochs`` epochs.

    At the start of (0-based) epoch ``e`` it sets ``kl_weight = min(1, (e+1)/N)``;
    ``N == 0`` means no warm-up (weight 1). Assigning the variable in
    ``on_epoch_begin`` works on JAX too: the JAX trainer re-reads its state from the
    variables after this hook, before the epoch's first step.

    Args:
        kl_warmup_epochs: ``N``; defaults to the model's ``kl_warmup_epochs``.
    """

    def __init__(self, kl_warmup_epochs: int | None = None) -> None:
        super().__init__()
        if kl_warmup_epochs is not None and kl_warmup_epochs < 0:
            raise ValueError(
                f"kl_warmup_epochs must be >= 0. Received: kl_warmup_epochs={kl_warmup_epochs}"
            )
        self.kl_warmup_epochs = kl_warmup_epochs

    def kl_weight_for_epoch(self, epoch: int) -> float:
        """The KL weight used during 0-based ``epoch``."""
        n = self.kl_warmup_epochs
        if n is None:
            n = self.model.kl_warmup_epochs
        return losses.warmup_kl_weight(epoch, n)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.model.kl_weight.assign(self.kl_weight_for_epoch(epoch))


class EpochTermsLogger(keras.callbacks.Callback):
    """Prints one line of ELBO terms per epoch through ``print_fn``.

    Example line::

        epoch 3/50  train: recon=4.1234 kl=1.0345 elbo=-5.1579 beta=0.7500  val: recon=...
    """

    _TRAIN = (("recon", "reconstruction_nll"), ("kl", "kl"), ("elbo", "elbo"), ("beta", "beta"))
    _VAL = (("recon", "val_reconstruction_nll"), ("kl", "val_kl"), ("elbo", "val_elbo"))

    def __init__(self, print_fn: Callable[[str], Any] = print) -> None:
        super().__init__()
        self.print_fn = print_fn

    def format_line(self, epoch: int, logs: Mapping[str, Any]) -> str:
        """Formats the line for 0-based ``epoch``; absent keys are skipped."""
        line = f"epoch {epoch + 1}/{self.params.get('epochs', '?')}"
        for title, fields in (("train", self._TRAIN), ("val", self._VAL)):
            values = [f"{short}={float(logs[key]):.4f}" for short, key in fields if key in logs]
            if values:
                line += f"  {title}: " + " ".join(values)
        return line

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.print_fn(self.format_line(epoch, logs or {}))


class _WarmupAwareCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that ignores epochs before ``start_from_epoch``.

    During KL warm-up the loss uses a smaller beta, so its val_loss is not comparable
    with later epochs; counting it as "best" would pin the checkpoint to warm-up.
    """

    def __init__(self, *args: Any, start_from_epoch: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_from_epoch = start_from_epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if epoch >= self.start_from_epoch:
            super().on_epoch_end(epoch, logs)


def fit_vae(
    model: keras.Model,
    train_data: Any,
    val_data: Any,
    epochs: int,
    learning_rate: float,
    patience: int,
    checkpoint_dir: str | os.PathLike,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    verbose: int | str = 0,
    *,
    batch_size: int | None = None,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    print_fn: Callable[[str], Any] | None = print,
    skip_nonfinite: bool = False,
    resume_dir: str | None = None,
    steps_per_execution: int = 1,
    device_resident: bool = False,
) -> keras.callbacks.History:
    """Compiles and trains ``model`` with warm-up, early stopping and checkpointing.

    On success the weights of the best epoch (lowest ``val_loss`` once warm-up is
    over) are restored in ``model`` and saved to ``checkpoint_dir/best.keras``.

    Args:
        model: A `VAE`.
        train_data: Anything ``Model.fit`` accepts as ``x``: a packed numpy array, a
            ``tf.data.Dataset`` or a ``keras.utils.PyDataset`` yielding packed batches
            (``x`` or ``(x, ...)``). Plain Python generators are exhausted after one
            epoch: wrap them in a PyDataset, or make them infinite and pass
            ``steps_per_epoch``.
        val_data: Same kinds as ``train_data`` (required: it drives model selection).
        epochs: Maximum number of epochs.
        learning_rate: Adam learning rate.
        patience: Epochs without val_loss improvement before stopping.
        checkpoint_dir: Directory for ``best.keras`` (created if needed).
        callbacks: Extra callbacks, run after the built-in ones.
        verbose: ``Model.fit`` progress-bar verbosity (0 = silent).
        batch_size: Batch size for numpy inputs (Keras default 32).
        steps_per_epoch: Passed to ``fit`` (needed for infinite streams).
        validation_steps: Passed to ``fit``.
        print_fn: Where `EpochTermsLogger` writes; None disables it.
        skip_nonfinite: If True, a batch whose loss or gradients are not finite is skipped
            (weights and optimizer state untouched, left out of the epoch means) instead of
            stopping training.
        resume_dir: Local folder for the resume point (`ResumeTraining`). A run killed
            mid-way and started again with the same arguments continues after its last
            finished epoch; the folder is removed when training succeeds. For the same
            result as an uninterrupted run, the data must give each epoch the same batches
            whatever the starting epoch (see `pipeline.train.epoch_dataset`).
        steps_per_execution: Training steps per compiled call (on JAX they run fused in one
            ``lax.scan``, see `JaxSteps.make_train_function`).
        device_resident: JAX only: put the (numpy) training rows on the device and run each
            epoch as one compiled call (`vae_model.resident.fit_resident`); ``batch_size``
            is required and callbacks run once per epoch.

    Returns:
        The ``History`` of the run.

    Raises:
        FloatingPointError: If the training loss became NaN/Inf. Nothing is saved.
    """
    _check_fit_args(val_data, epochs, learning_rate, patience)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    in_progress = checkpoint_dir / IN_PROGRESS_FILENAME
    # First epoch whose KL weight is final (KLWarmup reaches 1 at epoch N-1).
    start_epoch = max(0, model.kl_warmup_epochs - 1)

    model.skip_nonfinite = skip_nonfinite
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        steps_per_execution=steps_per_execution,
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=patience,
        restore_best_weights=True,
        start_from_epoch=start_epoch,
    )
    checkpoint = _WarmupAwareCheckpoint(
        str(in_progress), monitor="val_loss", save_best_only=True, start_from_epoch=start_epoch
    )
    builtin = [KLWarmup(), keras.callbacks.TerminateOnNaN(), stopper, checkpoint]
    resume = None
    if resume_dir is not None:
        resume = ResumeTraining(resume_dir, stopper, checkpoint, str(in_progress))
        builtin.append(resume)
    if print_fn is not None:
        builtin.append(EpochTermsLogger(print_fn))
    if device_resident:
        if batch_size is None:
            raise ValueError("device_resident training needs batch_size")
        history = fit_resident(
            model,
            train_data,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=val_data,
            callbacks=builtin + list(callbacks),
            seed=model.seed,
        )
    else:
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            callbacks=builtin + list(callbacks),
            verbose=verbose,
            # tf.data pipelines shuffle themselves (Keras warns if asked to); arrays and
            # PyDatasets get Keras' per-epoch shuffling.
            shuffle=not _is_tf_dataset(train_data),
        )
    bad_epoch = _first_non_finite_epoch(history)
    if bad_epoch is not None:
        if resume is None:  # with a resume point, its best checkpoint must stay
            in_progress.unlink(missing_ok=True)
        raise FloatingPointError(
            f"training diverged: loss became NaN at epoch {bad_epoch}; the model was not saved"
        )
    # Save the in-memory model (best weights restored by EarlyStopping) rather than
    # renaming the checkpoint: it also covers runs that never left warm-up.
    model.save(str(checkpoint_dir / BEST_MODEL_FILENAME), overwrite=True)
    in_progress.unlink(missing_ok=True)
    if resume is not None:
        history.history = resume.past_history  # the epochs before a resume too
        resume.delete()
    return history


def _check_fit_args(val_data: Any, epochs: Any, learning_rate: Any, patience: Any) -> None:
    if val_data is None:
        raise ValueError("val_data is required: early stopping and checkpoints monitor val_loss")
    if not _is_int(epochs) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer. Received: epochs={epochs!r}")
    if not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0. Received: learning_rate={learning_rate!r}")
    if not _is_int(patience) or patience < 0:
        raise ValueError(f"patience must be an integer >= 0. Received: patience={patience!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_tf_dataset(data: Any) -> bool:
    # Checked by module name so this file never imports tensorflow (JAX installs).
    return type(data).__module__.startswith("tensorflow.python.data")


def _first_non_finite_epoch(history: keras.callbacks.History) -> int | None:
    """1-based epoch number of the first non-finite training loss, if any."""
    for epoch, loss in zip(history.epoch, history.history.get("loss", []), strict=False):
        if not math.isfinite(float(loss)):
            return epoch + 1
    return None
