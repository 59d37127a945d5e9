"""vae_model.resume: a fit killed after an epoch leaves a resume point holding the early-stopping
state, the next fit continues from it, and a non-finite epoch is never saved. (A killed
`vaepipe train` ending as an unbroken run would is tested end to end in tests/test_resume.py.)"""

from __future__ import annotations

import json
import math

import keras
import pytest

from vae_model import VAE, fit_vae
from vae_model.resume import STATE_FILE, ResumeTraining, resume_epoch


class _Killed(RuntimeError):
    pass


class _KillAfterEpoch(keras.callbacks.Callback):
    """Stands in for SIGKILL: training ends after `epoch` (0-based), its resume point saved."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed(f"killed after epoch {epoch + 1}")


def test_resume_epoch_is_zero_without_a_resume_point(tmp_path):
    assert resume_epoch(str(tmp_path / "none")) == 0
    (tmp_path / "training_metadata.json").write_text(json.dumps({"epoch": 3}))
    assert resume_epoch(str(tmp_path)) == 3


def test_a_killed_fit_resumes_after_its_last_saved_epoch(layout, records, x_val, tmp_path):
    x = records(96, seed=0)
    resume_dir = tmp_path / "resume"

    def train(callbacks) -> keras.callbacks.History:
        model = VAE(layout.to_config(), latent_dim=2, hidden_units=(8,), seed=3)
        return fit_vae(model, x, x_val, epochs=4, learning_rate=1e-2, patience=10,
                       checkpoint_dir=tmp_path / "ckpt", batch_size=32, print_fn=None,
                       resume_dir=str(resume_dir), callbacks=callbacks)  # fmt: skip

    with pytest.raises(_Killed):
        train([_KillAfterEpoch(1)])
    assert resume_epoch(str(resume_dir)) == 2
    states = json.loads((resume_dir / STATE_FILE).read_text())["states"]
    assert [s["epoch"] for s in states] == [1, 2]  # the last state and the one before it
    state = states[-1]
    assert len(state["history"]["loss"]) == 2 and len(state["seed_state"]) >= 1
    assert {"wait", "best", "best_epoch", "checkpoint_best"} <= set(state)

    seen: list[int] = []
    history = train([keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: seen.append(e))])
    assert seen == [2, 3]  # it went on from epoch 3, it did not start again
    assert len(history.history["loss"]) == 4  # the epochs before the kill are in the history
    assert history.history["loss"][:2] == state["history"]["loss"]
    assert not resume_dir.exists()  # a finished fit removes its resume point


def test_a_non_finite_epoch_is_never_made_the_resume_point(small_model, tmp_path):
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"))
    resume = ResumeTraining(str(tmp_path / "resume"), stopper, checkpoint, str(tmp_path / "b"))
    resume.set_model(small_model)
    resume.on_epoch_end(0, {"loss": math.nan, "val_loss": 1.0})
    assert not (tmp_path / "resume" / STATE_FILE).exists()
    assert resume.past_history == {}


def test_the_state_saved_with_the_resumed_weights_is_chosen(tmp_path):
    """Killed after the state of epoch 3 but before its weights: Keras resumes after epoch 2,
    and the state of epoch 2, kept beside it, is the one restored."""
    import json

    from vae_model.resume import read_states, state_for_epoch

    path = tmp_path / "resume_state.json"
    states = [{"epoch": 2, "history": {"loss": [2.0, 1.0]}}, {"epoch": 3, "history": {}}]
    path.write_text(json.dumps({"states": states}))
    assert state_for_epoch(read_states(str(path)), 2) == states[0]
    assert state_for_epoch(read_states(str(path)), 3) == states[1]
    assert state_for_epoch(read_states(str(path)), 4) is None
    path.write_text(json.dumps(states[0]))  # the older layout: one state
    assert state_for_epoch(read_states(str(path)), 2) == states[0]
    assert read_states(str(tmp_path / "none.json")) == []
