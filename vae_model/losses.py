"""The ELBO math, in one place and in backend-neutral ``keras.ops``.

Every quantity is in nats per record. For a packed batch ``x`` (see ``layout.py``)::

    feature_nll[b, j]      = -log p(x_bj | z_b) * mask_bj         (0 where missing)
    reconstruction_nll[b]  = sum_j feature_nll[b, j]
    kl[b]                  = KL(q(z | x_b) || N(0, I))
    negative_elbo[b]       = reconstruction_nll[b] + kl[b]
    training loss          = mean_b(reconstruction_nll[b] + beta * kl[b])

Missing entries are excluded from the likelihood, which is the ELBO of the observed
part of each record.

The importance-weighted bound (IWAE, Burda et al. 2016) tightens the ELBO with K posterior
draws ``z_k ~ q(z | x)``::

    log_weight[k, b]       = log p(x_b | z_k) + log p(z_k) - log q(z_k | x_b)
    iwae[b]                = logsumexp_k(log_weight[k, b]) - log K      (<= log p(x_b))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from keras import ops

from vae_model.categorical import plan_for
from vae_model.layout import FeatureLayout, unpack
from vae_model.likelihoods import bernoulli_nll, gaussian_nll

DEFAULT_MIN_LOG_VAR = -6.0
DEFAULT_MAX_LOG_VAR = 6.0


def warmup_kl_weight(epoch: int, warmup_epochs: int) -> float:
    """The KL weight of 0-based ``epoch`` in a linear ``warmup_epochs`` warm-up:
    ``min(1, (epoch + 1) / N)``, and 1 throughout when ``N == 0``."""
    return 1.0 if warmup_epochs == 0 else min(1.0, (epoch + 1) / warmup_epochs)


def clamp_log_var(
    log_var: Any,
    min_log_var: float = DEFAULT_MIN_LOG_VAR,
    max_log_var: float = DEFAULT_MAX_LOG_VAR,
) -> Any:
    """Clips log-variances so that ``exp(-log_var)`` can neither overflow nor vanish."""
    return ops.clip(log_var, min_log_var, max_log_var)


def kl_standard_normal(z_mean: Any, z_log_var: Any) -> Any:
    """Per-record ``KL(N(z_mean, exp(z_log_var)) || N(0, I))``, summed over latent dims.

    Args:
        z_mean: ``[B, L]`` posterior means.
        z_log_var: ``[B, L]`` posterior log-variances.

    Returns:
        ``[B]`` KL divergence in nats.
    """
    terms = ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var
    return 0.5 * ops.sum(terms, axis=-1)


def feature_nll(
    x_packed: Any,
    decoder_outputs: Mapping[str, Any],
    layout: FeatureLayout,
    min_log_var: float = DEFAULT_MIN_LOG_VAR,
    max_log_var: float = DEFAULT_MAX_LOG_VAR,
) -> Any:
    """Masked per-feature NLL ``[B, width]`` in layout order.

    Args:
        x_packed: ``[B, 2*width]`` packed input.
        decoder_outputs: ``{"numeric_mu": [B, n_num], "numeric_log_var": [B, n_num],
            "categorical_logits": [B, onehot_dim], "bernoulli_logits": [B, n_bern]}``
            (``bernoulli_logits`` only needed when the layout has Bernoulli features).
            ``categorical_logits`` is every categorical feature's logits side by side in
            layout order, as `VAE.decode` gives them; a list of one ``[B, card_j]`` per
            feature is accepted too.
        layout: The feature layout.
        min_log_var: Lower clamp for the numeric log-variance.
        max_log_var: Upper clamp for the numeric log-variance.

    Returns:
        ``[B, width]`` NLL, exactly 0 where the mask is 0.
    """
    values, mask = unpack(ops.cast(x_packed, "float32"), layout)
    # Zero the missing slots first: a NaN placeholder would otherwise poison the
    # gradient even though the mask multiplies its NLL by zero.
    values = ops.where(mask > 0, values, ops.zeros_like(values))
    n_num = layout.n_numeric
    columns = []
    if n_num:
        log_var = clamp_log_var(decoder_outputs["numeric_log_var"], min_log_var, max_log_var)
        columns.append(gaussian_nll(values[:, :n_num], decoder_outputs["numeric_mu"], log_var))
    if layout.n_categorical:
        logits = decoder_outputs["categorical_logits"]
        if isinstance(logits, list | tuple):  # one [B, card_j] per feature: the old form
            logits = ops.concatenate([ops.cast(part, "float32") for part in logits], axis=-1)
        index = values[:, n_num : layout.bernoulli_start]
        # All features at once (`CategoricalPlan.nll`): the graph does not grow with them.
        columns.append(plan_for(layout.cardinalities).nll(index, logits))
    if layout.n_bernoulli:
        intensities = values[:, layout.bernoulli_start :]
        columns.append(bernoulli_nll(intensities, decoder_outputs["bernoulli_logits"]))
    nll = columns[0] if len(columns) == 1 else ops.concatenate(columns, axis=-1)
    return nll * mask


def combine_terms(per_feature_nll: Any, kl: Any) -> dict[str, Any]:
    """Assembles the per-record ELBO terms from a masked feature NLL and a KL.

    Split out of `elbo_terms` so Monte-Carlo scoring can average the feature NLL over
    several latent draws before combining.
    """
    reconstruction_nll = ops.sum(per_feature_nll, axis=-1)
    return {
        "feature_nll": per_feature_nll,
        "reconstruction_nll": reconstruction_nll,
        "kl": kl,
        "negative_elbo": reconstruction_nll + kl,
    }


def elbo_terms(
    x_packed: Any,
    decoder_outputs: Mapping[str, Any],
    z_mean: Any,
    z_log_var: Any,
    layout: FeatureLayout,
    min_log_var: float = DEFAULT_MIN_LOG_VAR,
    max_log_var: float = DEFAULT_MAX_LOG_VAR,
) -> dict[str, Any]:
    """Per-record ELBO terms for one decoded latent sample per record.

    Returns:
        Dict with ``feature_nll`` ``[B, width]`` and ``reconstruction_nll``, ``kl``,
        ``negative_elbo`` (each ``[B]``, nats).
    """
    nll = feature_nll(x_packed, decoder_outputs, layout, min_log_var, max_log_var)
    kl = kl_standard_normal(z_mean, clamp_log_var(z_log_var, min_log_var, max_log_var))
    return combine_terms(nll, kl)


def weighted_negative_elbo(terms: Mapping[str, Any], beta: Any) -> Any:
    """Per-record training objective ``reconstruction_nll + beta * kl`` (``[B]``)."""
    return terms["reconstruction_nll"] + beta * terms["kl"]


def training_loss(
    terms: Mapping[str, Any], beta: Any, trim: float = 0.0, active: Any = True
) -> Any:
    """Scalar training loss: batch mean of ``reconstruction_nll + beta * kl``.

    With ``trim`` > 0 and ``active`` (a boolean, may be a tensor), the mean leaves out the
    ``B - floor((1 - trim) * B)`` worst-explained records of the batch, so at least one (a
    trimmed likelihood): the unlabelled training rows hold anomalies, and a model that spends
    capacity on explaining them scores them lower. Which records are left out is chosen per
    batch and carries no gradient.
    """
    per_record = weighted_negative_elbo(terms, beta)
    plain = ops.mean(per_record)
    if trim <= 0:
        return plain
    n = ops.shape(per_record)[0]
    keep = ops.maximum(ops.floor((1.0 - trim) * ops.cast(n, "float32")), 1.0)
    ranks = ops.argsort(ops.argsort(ops.stop_gradient(per_record)))  # 0 = best explained
    kept = ops.cast(ops.cast(ranks, "float32") < keep, "float32")
    trimmed = ops.sum(per_record * kept) / ops.sum(kept)
    return ops.where(active, trimmed, plain)


def log_density_ratio(z: Any, z_mean: Any, z_log_var: Any) -> Any:
    """``log N(z; 0, I) - log N(z; z_mean, exp(z_log_var))`` summed over the latent dims.

    The ``log(2 pi)`` terms cancel. Its expectation under ``q`` is ``-KL(q || N(0, I))``.

    Args:
        z: ``[..., L]`` latent draws.
        z_mean: ``[..., L]`` posterior means (broadcast against ``z``).
        z_log_var: ``[..., L]`` posterior log-variances.

    Returns:
        ``[...]`` log density ratio in nats.
    """
    log_prior = -0.5 * ops.square(z)
    log_posterior = -0.5 * (ops.square(z - z_mean) * ops.exp(-z_log_var) + z_log_var)
    return ops.sum(log_prior - log_posterior, axis=-1)


def iwae_bound(log_weights: Any) -> Any:
    """Per-record importance-weighted bound from ``[K, B]`` log weights: ``[B]`` nats.

    ``logsumexp`` over the draws (stable for weights far below 1), minus ``log K``.
    """
    k = int(log_weights.shape[0])
    return ops.logsumexp(log_weights, axis=0) - math.log(k)
