"""Resumable training: a killed run continues from its last finished epoch, as if never stopped.

Keras' BackupAndRestore saves the weights (with the optimizer state) and the epoch. That is not
enough to reach the same result: the sampling seed generator's state is not among the saved
weights, and early stopping's patience counter, its best value and best weights, and the
checkpoint's best value live in memory. `ResumeTraining`
saves them too, after they were updated for the epoch and before the weights (keeping the
state of the epoch before beside them), and at the next start restores the state saved with
the weights Keras resumes from: a kill between the two saves loses nothing.
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
        state = state_for_epoch(read_states(self._state_path), self.model._initial_epoch)
        if state is None:
            return  # no resume point, or one that does not match the weights: start fresh
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
        # The state goes first, beside the one before it, then the weights: a kill between
        # the two leaves the weights of the epoch before and that epoch's state still there.
        states = [*read_states(self._state_path)[-1:], state]
        os.makedirs(self.backup_dir, exist_ok=True)
        temporary = self._state_path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump({"states": states}, handle)
        os.replace(temporary, self._state_path)  # atomic: a kill leaves old or new states
        super().on_epoch_end(epoch, logs)

    def delete(self) -> None:
        """Remove the resume point (call once training has finished for good)."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)


def read_states(path: str) -> list[dict]:
    """The saved resume states, oldest first ([] when there are none)."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        saved = json.load(handle)
    return saved["states"] if "states" in saved else [saved]  # one state: the older layout


def state_for_epoch(states: list[dict], epoch: int) -> dict | None:
    """The state saved with the weights Keras resumes from (`epoch` epochs done), if any."""
    return next((state for state in reversed(states) if state["epoch"] == epoch), None)


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
