"""Resumable training: a killed run continues from its last finished epoch, as if never stopped.

Keras' BackupAndRestore saves the weights (with the optimizer state) and the epoch. That is not
enough to reach the same result: the sampling seed generator's state is not among the saved
weights, and early stopping's patience counter, its best value and best weights, and the
checkpoint's best value live in memory. `ResumeTraining`
saves them too, after they were updated for the epoch, and restores them at the next start.
It never saves an epoch whose loss is not finite, and keeps its files until told to delete
them (the trap of `delete_checkpoint=True` with TerminateOnNaN: a NaN stop would otherwise
wipe the resume point).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from typing import Any

import keras

STATE_FILE = "resume_state.json"


class ResumeTraining(keras.callbacks.BackupAndRestore):
    """BackupAndRestore plus the state of early stopping and of the best checkpoint.

    Place it after the EarlyStopping and ModelCheckpoint callbacks it restores.
    """

    def __init__(
        self,
        backup_dir: str,
        early_stopping: keras.callbacks.EarlyStopping,
        checkpoint: keras.callbacks.ModelCheckpoint,
        best_model_path: str,
    ) -> None:
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self._early_stopping = early_stopping
        self._checkpoint = checkpoint
        self._best_model_path = best_model_path
        self._state_path = os.path.join(backup_dir, STATE_FILE)
        self.past_history: dict[str, list[float]] = {}
        self.resumed_from_epoch = 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if not os.path.exists(self._state_path):
            return
        with open(self._state_path) as handle:
            state = json.load(handle)
        if state["epoch"] != self.model._initial_epoch:
            return  # killed between saving weights and state: restart the counters only
        stopper = self._early_stopping
        stopper.wait, stopper.best = state["wait"], state["best"]
        stopper.best_epoch = state["best_epoch"]
        self._checkpoint.best = state["checkpoint_best"]
        if "seed_state" in state:  # sampling noise continues where it stopped
            self.model.seed_generator.state.assign(state["seed_state"])
        self.past_history = state["history"]
        self.resumed_from_epoch = state["epoch"]
        if stopper.restore_best_weights and os.path.exists(self._best_model_path):
            best = keras.saving.load_model(self._best_model_path, compile=False, safe_mode=True)
            stopper.best_weights = best.get_weights()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        if not math.isfinite(float(logs.get("loss", 0.0))):
            return  # never make a diverged epoch the resume point
        super().on_epoch_end(epoch, logs)  # weights first: a state never runs ahead of them
        for key, value in logs.items():
            self.past_history.setdefault(key, []).append(float(value))
        stopper = self._early_stopping
        state = {
            "epoch": epoch + 1,
            "wait": stopper.wait,
            "best": _plain(stopper.best),
            "best_epoch": stopper.best_epoch,
            "checkpoint_best": _plain(self._checkpoint.best),
            "history": self.past_history,
        }
        if hasattr(self.model, "seed_generator"):  # save_weights does not cover it
            state["seed_state"] = [
                int(v) for v in keras.ops.convert_to_numpy(self.model.seed_generator.state.value)
            ]
        os.makedirs(self.backup_dir, exist_ok=True)
        temporary = self._state_path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(state, handle)
        os.replace(temporary, self._state_path)  # atomic: a kill leaves old or new state

    def delete(self) -> None:
        """Remove the resume point (call once training has finished for good)."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)


def resume_epoch(backup_dir: str) -> int:
    """The epoch a run resuming from `backup_dir` starts at (0 when there is no resume point).

    Read from BackupAndRestore's own metadata: the epoch Keras will start at.
    """
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        return int(json.load(handle)["epoch"])


def _plain(value: Any) -> float:
    return float(value) if value is not None else math.inf
