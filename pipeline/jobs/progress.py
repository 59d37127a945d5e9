"""Progress a person can watch in a terminal: a bar over training epochs and a spinner with
the elapsed time while a Beam job runs (the DirectRunner reports no progress of its own).

Both draw only when stderr is a terminal; in logs, CI and notebooks' captured output they
stay silent (the per-epoch ELBO lines and the row accounting are printed either way).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


def interactive() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def job_status(label: str) -> Iterator[None]:
    """A spinner with the elapsed time while the block runs (a Beam job)."""
    if not interactive():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(f"{label} (Beam) ...", spinner="dots"):
        yield


def epoch_progress(epochs: int) -> Any:
    """A Keras callback drawing a bar over the epochs with the latest ELBO, or None."""
    if not interactive():
        return None
    import keras
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class _EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._bar = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("epochs  {task.fields[terms]}"),
                TimeElapsedColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=epochs, terms="")

        def on_epoch_end(self, epoch, logs=None):
            elbo = (logs or {}).get("val_elbo", (logs or {}).get("elbo"))
            terms = f"val ELBO {float(elbo):.3f}" if elbo is not None else ""
            self._bar.update(self._task, completed=epoch + 1, terms=terms)

        def on_train_end(self, logs=None):
            self._bar.stop()

    return _EpochProgress()
