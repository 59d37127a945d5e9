"""An ensemble of VAEs scored as one: the members' scoring terms averaged, codes from the first.

One small VAE's anomaly score varies with its training run (initialisation, batch order): on
the development corpus a single fit's AUROC moved by about 0.1 between seeds on some sets,
which a user cannot see and a single model cannot average away. Members that differ only in
their seed make errors that are partly independent, so their mean score has less of that
variance (docs/BENCHMARKS.md, "Ensemble").

The mean of the members' negative ELBOs is the negative log of the geometric mean of their
likelihood bounds (a product of experts), so the score keeps its unit (nats), its split into
reconstruction and KL terms, and its per-feature terms. The latent code, decoding and
compression are the first member's: a code belongs to one decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from keras import ops

AVERAGED_TERMS = ("score", "reconstruction_nll", "kl", "feature_nll")


class VAEEnsemble:
    """The scoring interface of `VAE` (``scoring_function``, ``score_terms``,
    ``score_mc_samples``) over several members; anything else is the first member's.

    Args:
        members: The VAEs, the first being the one whose codes the outputs carry. They must
            share a layout and a latent size.
    """

    def __init__(self, members: Sequence[Any]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for i, member in enumerate(members[1:], start=1):
            if member.layout.to_config() != first.layout.to_config():
                raise ValueError(f"ensemble member {i} models another layout than member 0")
            if member.latent_dim != first.latent_dim:
                raise ValueError(
                    f"ensemble member {i} has latent_dim {member.latent_dim}, "
                    f"member 0 has {first.latent_dim}"
                )
        self.members = tuple(members)

    def __len__(self) -> int:
        return len(self.members)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: layout, latent_dim, decode, ...
        if name == "members":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.members[0], name)

    @property
    def score_mc_samples(self) -> int:
        return self.members[0].score_mc_samples

    @score_mc_samples.setter
    def score_mc_samples(self, value: int) -> None:
        for member in self.members:
            member.score_mc_samples = value

    def scoring_function(self, jit_compile: bool | None = None) -> Callable[[Any], dict[str, Any]]:
        """Every member's compiled scoring function on the batch, averaged (`average_terms`)."""
        calls = [member.scoring_function(jit_compile) for member in self.members]
        return lambda x: average_terms([call(x) for call in calls])

    def score_terms(self, x: Any, mc_samples: int = 0) -> dict[str, Any]:
        """`VAE.score_terms` of every member, averaged (`average_terms`)."""
        return average_terms([m.score_terms(x, mc_samples) for m in self.members])

    def predict_on_batch(self, x: Any) -> dict[str, np.ndarray]:
        return average_terms([m.predict_on_batch(x) for m in self.members])


def average_terms(terms: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The members' terms as NumPy arrays: `AVERAGED_TERMS` averaged, ``z_mean`` the first's."""
    if len(terms) == 1:
        return {key: np.asarray(ops.convert_to_numpy(v)) for key, v in terms[0].items()}
    out = {
        key: np.mean([np.asarray(ops.convert_to_numpy(t[key])) for t in terms], axis=0)
        for key in AVERAGED_TERMS
    }
    out["z_mean"] = np.asarray(ops.convert_to_numpy(terms[0]["z_mean"]))
    return out


def member_seed(seed: int, member: int) -> int:
    """The training seed of ensemble member `member` (0 keeps `seed`): far apart, so that no
    member shares a seed with another run's member at a nearby `seed`."""
    return seed + 1000 * member
