"""The mixed-type Variational Autoencoder (Keras 3; TensorFlow and JAX backends)."""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from vae_model import categorical, losses
from vae_model.layout import FeatureLayout, unpack
from vae_model.steps import JaxSteps, TensorFlowSteps

SUPPORTED_BACKENDS = ("tensorflow", "jax")

# The backend is fixed when keras is imported, so the step flavour can be too.
_Steps = JaxSteps if keras.backend.backend() == "jax" else TensorFlowSteps

NUMERIC_VARIANCES = ("record", "feature", "fixed")
TRACKER_NAMES = ("loss", "reconstruction_nll", "kl", "elbo", "beta")
_IWAE_ROWS = 65536  # rows decoded at once by `VAE.iwae_log_weights`


@keras.saving.register_keras_serializable(package="vaepipe")
class VAE(_Steps, keras.Model):
    """Variational autoencoder over packed mixed numeric/categorical/intensity records.

    Input: the packed ``[B, 2*width]`` float32 matrix described in ``layout.py``.
    Calling the model (and ``predict``) returns deterministic anomaly-scoring terms;
    see `score_terms`. Training uses the reparameterized single-sample ELBO.

    Args:
        layout: ``FeatureLayout.to_config()`` dict (a ``FeatureLayout`` is accepted too).
        latent_dim: Size of the latent code.
        hidden_units: Encoder Dense widths; the decoder uses them reversed.
        activation: Hidden-layer activation (any ``keras.activations`` name).
        beta: Weight of the KL term at the end of warm-up.
        kl_warmup_epochs: Epochs over which `KLWarmup` ramps the KL weight to 1
            (0 disables warm-up).
        min_log_var: Lower clamp for every log-variance (posterior and numeric).
        max_log_var: Upper clamp for every log-variance.
        seed: Seeds weight initialization, sampling noise and the fixed scoring draws.
        numeric_variance: How the Gaussian variance of numeric features is modelled:
            ``"record"``, decoded per record from the code (heteroscedastic; the default,
            what models saved before this option used); ``"feature"``, one learned variance
            per feature shared by all records; ``"fixed"``, unit variance in standardized
            units (the NLL is then squared error). A per-record variance lets the decoder
            call an anomaly's features "just noisy" and lower its score; see
            `NUMERIC_VARIANCES`.
        score_tolerance: A standard deviation (in the numeric features' standardized units)
            added in quadrature to the decoder's when scoring: the scoring terms
            (``call``/``predict``/`score_terms`) use the variance ``sigma^2 + tolerance^2``;
            training and the logged ELBO do not. A decoder can predict some features of
            normal records very precisely (discrete or nearly constant columns); without a
            tolerance their tiny residuals then outweigh large deviations elsewhere. ``0``
            (the default, what models saved before this option used) scores with the
            decoder's variance alone.
        trim_fraction: Share of each training batch, the worst explained, left out of the
            loss (a trimmed ELBO); see `losses.training_loss`.
        trim_start_epoch: The 0-based epoch from which the trim applies; ``None`` (the
            default, what models saved before this option used): once the KL warm-up is
            over. An epoch inside the warm-up starts it sooner: a training row's loss after
            the first epoch separates the anomalies hidden in the training rows better than
            after the warm-up, by which time the decoder has learned to rebuild them.
        **kwargs: Standard ``keras.Model`` arguments (``name``, ``dtype``, ...).
    """

    def __init__(
        self,
        layout: Mapping[str, Any] | FeatureLayout,
        latent_dim: int = 8,
        hidden_units: Sequence[int] = (128, 64),
        activation: str = "relu",
        beta: float = 1.0,
        kl_warmup_epochs: int = 0,
        min_log_var: float = losses.DEFAULT_MIN_LOG_VAR,
        max_log_var: float = losses.DEFAULT_MAX_LOG_VAR,
        seed: int = 0,
        numeric_variance: str = "record",
        score_tolerance: float = 0.0,
        trim_fraction: float = 0.0,
        trim_start_epoch: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_backend()
        if not isinstance(layout, FeatureLayout):
            layout = FeatureLayout.from_config(layout)
        self.layout = layout
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        self.hidden_units = tuple(_positive_int("hidden_units", u) for u in _as_seq(hidden_units))
        self.activation = _check_activation(activation)
        self.beta = _non_negative_float("beta", beta)
        self.kl_warmup_epochs = _non_negative_int("kl_warmup_epochs", kl_warmup_epochs)
        self.min_log_var, self.max_log_var = _check_log_var_range(min_log_var, max_log_var)
        self.seed = _non_negative_int("seed", seed)
        if numeric_variance not in NUMERIC_VARIANCES:
            raise ValueError(
                f"numeric_variance must be one of {NUMERIC_VARIANCES}. "
                f"Received: numeric_variance={numeric_variance!r}"
            )
        self.numeric_variance = numeric_variance
        self.score_tolerance = _non_negative_float("score_tolerance", score_tolerance)
        self.trim_fraction = _non_negative_float("trim_fraction", trim_fraction)
        if self.trim_fraction >= 0.5:
            raise ValueError(f"trim_fraction must be below 0.5. Received: {trim_fraction}")
        self.trim_start_epoch = (
            None if trim_start_epoch is None
            else _non_negative_int("trim_start_epoch", trim_start_epoch)
        )  # fmt: skip
        self._score_mc_samples = 0
        # Training-only switch (set by fit_vae, not saved): skip non-finite batches.
        self.skip_nonfinite = False

        # Static indices that vectorize the categorical features (no per-feature graph).
        self._categorical = categorical.plan_for(layout.cardinalities)
        self._build_networks()
        # KL weight in [0, 1], driven by the KLWarmup callback. Starts at 1 so a plain
        # fit() without the callback optimizes the full objective.
        self.kl_weight = self.add_weight(
            name="kl_weight", shape=(), initializer="ones", trainable=False, dtype="float32"
        )
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_nll")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.elbo_tracker = keras.metrics.Mean(name="elbo")
        self.beta_tracker = keras.metrics.Mean(name="beta")
        self.built = True

    # ------------------------------------------------------------------ networks
    def _build_networks(self) -> None:
        """Creates and builds all sublayers; shapes are known from the layout."""
        layout, counter = self.layout, itertools.count()

        def dense(units: int, name: str, activation: str | None = None) -> keras.layers.Dense:
            # Per-layer seeds make initialization a function of `seed` alone.
            init = keras.initializers.GlorotUniform(seed=self.seed * 1_000 + next(counter))
            return keras.layers.Dense(
                units, activation=activation, kernel_initializer=init, name=name
            )

        self.encoder_hidden = [
            dense(u, f"encoder_dense_{i}", self.activation) for i, u in enumerate(self.hidden_units)
        ]
        self.z_mean_head = dense(self.latent_dim, "z_mean")
        self.z_log_var_head = dense(self.latent_dim, "z_log_var")
        self.decoder_hidden = [
            dense(u, f"decoder_dense_{i}", self.activation)
            for i, u in enumerate(reversed(self.hidden_units))
        ]
        # Linear heads: standardized values (and log-variances) are unbounded.
        self.numeric_mu_head = dense(layout.n_numeric, "numeric_mu") if layout.n_numeric else None
        per_record = layout.n_numeric and self.numeric_variance == "record"
        self.numeric_log_var_head = (
            dense(layout.n_numeric, "numeric_log_var") if per_record else None
        )
        self.numeric_log_var = None
        if layout.n_numeric and self.numeric_variance == "feature":
            self.numeric_log_var = self.add_weight(
                name="numeric_log_var", shape=(layout.n_numeric,), initializer="zeros"
            )
        self.categorical_head = (
            dense(layout.onehot_dim, "categorical_logits") if layout.n_categorical else None
        )
        # Created last, and only when needed: tabular models keep their layers and seeds.
        self.bernoulli_head = (
            dense(layout.n_bernoulli, "bernoulli_logits") if layout.n_bernoulli else None
        )

        encoder_in = 2 * layout.n_numeric + layout.onehot_dim + layout.n_bernoulli
        hidden_out = _build_stack(self.encoder_hidden, encoder_in)
        self.z_mean_head.build((None, hidden_out))
        self.z_log_var_head.build((None, hidden_out))
        decoder_out = _build_stack(self.decoder_hidden, self.latent_dim)
        heads = (
            self.numeric_mu_head,
            self.numeric_log_var_head,
            self.categorical_head,
            self.bernoulli_head,
        )
        for head in heads:
            if head is not None:
                head.build((None, decoder_out))

    def _encoder_features(self, x: Any) -> Any:
        """concat(numeric value * mask, numeric mask, masked one-hot per categorical,
        Bernoulli intensity * mask).

        Bernoulli features (pixels) get no mask inputs: images have no missing pixels, and
        a mask per pixel would double the encoder's input.
        """
        layout, n = self.layout, self.layout.n_numeric
        values, mask = unpack(x, layout)
        values = ops.where(mask > 0, values, ops.zeros_like(values))  # NaN-safe masking
        parts = [values[:, :n], mask[:, :n]] if n else []
        if layout.n_categorical:
            # All features in one op (`CategoricalPlan.onehot`); a missing category becomes
            # an all-zero one-hot rather than class 0.
            stop = layout.bernoulli_start
            parts.append(self._categorical.onehot(values[:, n:stop], mask[:, n:stop]))
        if layout.n_bernoulli:
            parts.append(values[:, layout.bernoulli_start :])
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def encode(self, x: Any) -> tuple[Any, Any]:
        """Posterior parameters for packed input ``x``.

        Returns:
            ``(z_mean, z_log_var)``, each ``[B, latent_dim]`` float32; the log-variance
            is clamped to ``[min_log_var, max_log_var]``.
        """
        h = self._encoder_features(ops.cast(x, "float32"))
        for layer in self.encoder_hidden:
            h = layer(h)
        # float32 heads keep the likelihood math out of float16 under mixed precision.
        z_mean = ops.cast(self.z_mean_head(h), "float32")
        z_log_var = ops.cast(self.z_log_var_head(h), "float32")
        return z_mean, losses.clamp_log_var(z_log_var, self.min_log_var, self.max_log_var)

    def decode(self, z: Any) -> dict[str, Any]:
        """Likelihood parameters for latent codes ``z`` ``[B, latent_dim]``.

        Returns:
            ``{"numeric_mu": [B, n_num], "numeric_log_var": [B, n_num] (clamped),
            "categorical_logits": [B, onehot_dim], "bernoulli_logits": [B, n_bern]}``.
            ``categorical_logits`` holds every categorical feature's logits side by side in
            layout order (``categorical.plan_for(layout.cardinalities).split`` gives one
            ``[B, card_j]`` tensor per feature).
        """
        h = ops.cast(z, "float32")
        for layer in self.decoder_hidden:
            h = layer(h)
        if self.numeric_mu_head is None:
            mu = log_var = ops.cast(z, "float32")[:, :0]  # [B, 0]: no numeric features.
        else:
            mu = ops.cast(self.numeric_mu_head(h), "float32")
            log_var = losses.clamp_log_var(
                self._numeric_log_var(h, mu), self.min_log_var, self.max_log_var
            )
        if self.categorical_head is None:
            logits = ops.cast(z, "float32")[:, :0]  # [B, 0]: no categorical features.
        else:
            # Kept flat: slicing it per feature would make the graph grow with the columns.
            logits = ops.cast(self.categorical_head(h), "float32")
        if self.bernoulli_head is None:
            bernoulli = ops.cast(z, "float32")[:, :0]  # [B, 0]: no Bernoulli features.
        else:
            bernoulli = ops.cast(self.bernoulli_head(h), "float32")
        return {
            "numeric_mu": mu,
            "numeric_log_var": log_var,
            "categorical_logits": logits,
            "bernoulli_logits": bernoulli,
        }

    def _numeric_log_var(self, h: Any, mu: Any) -> Any:
        """Unclamped numeric log-variances ``[B, n_num]`` for `numeric_variance`."""
        if self.numeric_variance == "record":
            return ops.cast(self.numeric_log_var_head(h), "float32")
        if self.numeric_variance == "feature":
            return ops.zeros_like(mu) + ops.cast(self.numeric_log_var, "float32")[None, :]
        return ops.zeros_like(mu)

    def reconstruct_from_code(self, z: Any) -> np.ndarray:
        """Most likely record for each code, in the packed-values convention.

        Returns:
            numpy float32 ``[B, width]``: numeric columns are the decoded means,
            categorical columns the argmax category index as a float, Bernoulli columns
            the mean intensity ``sigmoid(logit)`` (not a 0/1 draw: a grey pixel stays grey).
            Full float32 matmuls, as in scoring: a decoded record must not depend on the
            batch it was decoded in (see `exact_float32_matmuls`).
        """
        with exact_float32_matmuls():
            out = self.decode(ops.convert_to_tensor(z, "float32"))
            columns = [out["numeric_mu"]]
            if self.layout.n_categorical:
                argmax = self._categorical.argmax(out["categorical_logits"])
                columns.append(ops.cast(argmax, "float32"))
            columns.append(ops.sigmoid(out["bernoulli_logits"]))
            return ops.convert_to_numpy(ops.concatenate(columns, axis=-1))

    # ------------------------------------------------------------------- scoring
    @property
    def score_mc_samples(self) -> int:
        """Latent draws used by ``call``/``predict`` scoring (0 = decode at z_mean)."""
        return self._score_mc_samples

    @score_mc_samples.setter
    def score_mc_samples(self, value: int) -> None:
        self._score_mc_samples = _non_negative_int("score_mc_samples", value)
        # predict() and `scoring_function` cache compiled functions in which K is a constant.
        self.predict_function = None
        self.__dict__["_scoring_functions"] = {}  # outside Keras' attribute tracking

    def call(self, x: Any, training: bool = False, stochastic: bool | None = None) -> dict:
        """Scores (or, when stochastic, ELBO-estimates) a packed batch.

        Args:
            x: ``[B, 2*width]`` packed input.
            training: Keras training flag; by default also selects the sampled path.
            stochastic: If true, decode one reparameterized sample of z (the training
                estimator, also used for validation). Defaults to ``training``.

        Returns:
            Dict with ``score``, ``reconstruction_nll``, ``kl`` (each ``[B]``),
            ``feature_nll`` ``[B, width]`` and ``z_mean`` ``[B, latent_dim]``.
        """
        x = ops.cast(x, "float32")
        if stochastic is None:
            stochastic = bool(training)
        if stochastic:
            return self._sampled_terms(x)
        return self._deterministic_terms(x, self.score_mc_samples)

    def score_terms(self, x: Any, mc_samples: int = 0) -> dict[str, Any]:
        """Deterministic anomaly-scoring terms for packed input ``x``.

        ``score`` is the negative ELBO in nats (``reconstruction_nll + kl``; higher =
        more anomalous). With ``mc_samples=0`` the reconstruction is evaluated at
        ``z = z_mean``. With ``K > 0`` the feature NLL is averaged over ``K`` fixed
        standard-normal draws (numpy, seeded by ``seed``) shared by all records, so a
        record's score never depends on the rest of its batch.

        Returns:
            Dict of backend tensors (``keras.ops.convert_to_numpy`` works on each):
            ``score``, ``reconstruction_nll``, ``kl`` ``[B]``, ``feature_nll``
            ``[B, width]``, ``z_mean`` ``[B, latent_dim]``.
        """
        mc_samples = _non_negative_int("mc_samples", mc_samples)
        return self._deterministic_terms(ops.convert_to_tensor(x, "float32"), mc_samples)

    def scoring_function(self, jit_compile: bool | None = None) -> Callable[[Any], dict[str, Any]]:
        """The scoring terms of ``call`` (at `score_mc_samples`) as one compiled function.

        ``fn(x)`` takes a packed ``[B, 2*width]`` float32 batch and returns the dict of
        `score_terms` as backend tensors. It is traced once and cached on the model, so a
        scoring loop pays none of ``predict_on_batch``'s per-call set-up.

        ``jit_compile`` None (the default) means XLA on JAX and the plain graph on TensorFlow:
        TensorFlow's XLA bridge writes absl log lines to stderr on its first compile, which the
        console's log-level settings do not silence, for a gain of about 15% of the model step
        at the default batch (a few per cent of a job). With ``jit_compile`` the network is
        compiled with XLA: on JAX the whole step; on TensorFlow the encoder and decoder (XLA
        fuses the encoder's one-hot and the heads' casts and clamps, about twice as fast on
        CPU), while the likelihood stays a plain
        graph: under XLA's CPU code it gained nothing, and at large batches lost
        (docs/BENCHMARKS.md, "Scoring speed (issue 14)"). XLA's kernels round in the last
        float32 bits differently (scores agree to about 2e-7 relative); ``jit_compile=False``
        on TensorFlow gives exactly ``predict``'s graph.
        TF32 stays off wherever the scoring worker switched it off: TensorFlow's XLA bridge
        follows that switch, and JAX traces under `exact_float32_matmuls`.
        """
        if jit_compile is None:
            jit_compile = keras.backend.backend() == "jax"
        key = (self.score_mc_samples, bool(jit_compile))
        cache = self.__dict__.setdefault("_scoring_functions", {})
        if key not in cache:
            cache[key] = _compiled_scoring(self, self.score_mc_samples, bool(jit_compile))
        return cache[key]

    def _sampled_terms(self, x: Any) -> dict[str, Any]:
        z_mean, z_log_var = self.encode(x)
        noise = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        z = z_mean + ops.exp(0.5 * z_log_var) * noise
        terms = losses.elbo_terms(
            x, self.decode(z), z_mean, z_log_var, self.layout, self.min_log_var, self.max_log_var
        )
        return _outputs(terms, z_mean)

    def _deterministic_terms(self, x: Any, mc_samples: int) -> dict[str, Any]:
        with exact_float32_matmuls():
            return self._deterministic_terms_inner(x, mc_samples)

    def _deterministic_terms_inner(self, x: Any, mc_samples: int) -> dict[str, Any]:
        z_mean, z_log_var = self.encode(x)
        kl = losses.kl_standard_normal(z_mean, z_log_var)
        if mc_samples == 0:
            nll = self._feature_nll(x, z_mean)
        else:
            draws = ops.convert_to_tensor(self._fixed_draws(mc_samples))  # [K, L]
            z = z_mean[None] + ops.exp(0.5 * z_log_var)[None] * draws[:, None, :]
            # Sample-major flattening [K*B, L] matches tile(x, (K, 1)).
            nll = self._feature_nll(
                ops.tile(x, (mc_samples, 1)), ops.reshape(z, (-1, self.latent_dim))
            )
            nll = ops.mean(ops.reshape(nll, (mc_samples, -1, self.layout.width)), axis=0)
        return _outputs(losses.combine_terms(nll, kl), z_mean)

    def _scoring_network(self, x: Any) -> tuple[Any, Any, dict[str, Any]]:
        """The network part of scoring at ``z = z_mean``: posterior and decoder outputs."""
        with exact_float32_matmuls():
            z_mean, z_log_var = self.encode(x)
            return z_mean, z_log_var, self.decode(z_mean)

    def _terms_at_mean(
        self, x: Any, z_mean: Any, z_log_var: Any, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        """The scoring terms from `_scoring_network`'s outputs (what
        ``_deterministic_terms(x, 0)`` computes, split at the decoder)."""
        kl = losses.kl_standard_normal(z_mean, z_log_var)
        nll = self._decoded_nll(x, outputs)
        return _outputs(losses.combine_terms(nll, kl), z_mean)

    def _feature_nll(self, x: Any, z: Any) -> Any:
        """Per-feature NLL of the scoring terms: the decoder's numeric variance plus the
        scoring tolerance's."""
        return self._decoded_nll(x, self.decode(z))

    def _decoded_nll(self, x: Any, outputs: dict[str, Any]) -> Any:
        """`_feature_nll` of decoder outputs already computed."""
        if self.score_tolerance > 0 and self.layout.n_numeric:
            tolerance_log_var = 2.0 * math.log(self.score_tolerance)
            log_var = ops.logaddexp(outputs["numeric_log_var"], tolerance_log_var)
            outputs = {**outputs, "numeric_log_var": log_var}
        return losses.feature_nll(x, outputs, self.layout, self.min_log_var, self.max_log_var)

    def iwae_bound(
        self, x: Any, k: int, seed: int | None = None, scoring: bool = False
    ) -> np.ndarray:
        """Per-record importance-weighted lower bound on ``log p(x)`` (nats; IWAE).

        ``log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)`` with ``z_k ~ q(z | x)``, see
        `losses.iwae_bound`. At ``k=1`` it is a one-draw estimate of the ELBO (equal to it
        in expectation); its expectation does not decrease as ``k`` grows and tends to
        ``log p(x)``.

        Args:
            x: ``[B, 2*width]`` packed input.
            k: Number of importance samples (positive).
            seed: Seed of the draws (default: ``self.seed``).
            scoring: Use the scoring likelihood (numeric variances widened by
                ``score_tolerance``) instead of the trained one.

        Returns:
            numpy float32 ``[B]``: the bound per record (higher = more likely).
        """
        log_weights = self.iwae_log_weights(x, k, seed, scoring)
        return np.asarray(ops.convert_to_numpy(losses.iwae_bound(log_weights)), np.float32)

    def iwae_log_weights(
        self, x: Any, k: int, seed: int | None = None, scoring: bool = False
    ) -> np.ndarray:
        """``log p(x | z_k) + log p(z_k) - log q(z_k | x)`` for ``k`` posterior draws.

        The draws are ``k`` standard-normal vectors seeded by ``seed`` (default: the model's)
        and shared by all records, so a record's weights never depend on the rest of its
        batch; the first ``j`` draws of ``k`` are those of ``j``. Each row is a one-draw ELBO
        estimate; `losses.iwae_bound` of the rows (or of any block of them) is the bound.

        Returns:
            numpy float32 ``[k, B]`` log weights in nats.
        """
        k = _positive_int("k", k)
        seed = self.seed if seed is None else _non_negative_int("seed", seed)
        draws = np.random.default_rng(seed).standard_normal((k, self.latent_dim))
        draws = draws.astype(np.float32)
        with exact_float32_matmuls():
            x = ops.convert_to_tensor(x, "float32")
            z_mean, z_log_var = self.encode(x)
            n = int(x.shape[0])
            # Several draws per decode, at most ~64k rows at a time: fast and bounded memory.
            step = max(1, _IWAE_ROWS // max(n, 1))
            out = [
                self._log_weights(x, z_mean, z_log_var, draws[i : i + step], scoring)
                for i in range(0, k, step)
            ]
            return np.concatenate(out, axis=0)

    def _log_weights(self, x: Any, z_mean: Any, z_log_var: Any, draws: np.ndarray, scoring):
        """``[len(draws), B]`` log weights of one block of draws (sample-major)."""
        j = len(draws)
        z = z_mean[None] + ops.exp(0.5 * z_log_var)[None] * ops.convert_to_tensor(draws)[:, None]
        flat_z, flat_x = ops.reshape(z, (-1, self.latent_dim)), ops.tile(x, (j, 1))
        if scoring:
            nll = self._feature_nll(flat_x, flat_z)
        else:
            outputs = self.decode(flat_z)
            nll = losses.feature_nll(
                flat_x, outputs, self.layout, self.min_log_var, self.max_log_var
            )
        log_likelihood = ops.reshape(-ops.sum(nll, axis=-1), (j, -1))
        log_weights = log_likelihood + losses.log_density_ratio(z, z_mean[None], z_log_var[None])
        return np.asarray(ops.convert_to_numpy(log_weights), np.float32)

    def _fixed_draws(self, mc_samples: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal((mc_samples, self.latent_dim)).astype(np.float32)

    # ------------------------------------------------------------------ training
    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Loss trackers, in ``TRACKER_NAMES`` order; reset by Keras every epoch."""
        return [
            self.loss_tracker,
            self.reconstruction_tracker,
            self.kl_tracker,
            self.elbo_tracker,
            self.beta_tracker,
        ]

    def trim_active(self, kl_weight: Any) -> Any:
        """Whether the trim applies at this KL weight (a boolean, a tensor in a step).

        The KL weight is the step's clock: `KLWarmup` sets it to ``(e+1)/N`` at epoch ``e``
        of an ``N``-epoch warm-up, so epoch ``trim_start_epoch`` is the weight's value then
        (no extra state, so bundles saved before the option load unchanged).
        """
        n, start = self.kl_warmup_epochs, self.trim_start_epoch
        at = 1.0 if start is None else losses.warmup_kl_weight(start, n)
        # Half a warm-up step of slack: (e+1)/N is inexact in float32.
        return kl_weight >= at - (0.5 / n if n else 0.0)

    def effective_beta(self, kl_weight: Any) -> Any:
        """The KL weight actually applied: ``beta * kl_weight``."""
        return ops.cast(self.beta, "float32") * ops.convert_to_tensor(kl_weight, "float32")

    def update_trackers(self, terms: Mapping[str, Any], beta: Any) -> dict[str, Any]:
        """Updates the trackers with per-record terms and returns the logs dict.

        Per-record vectors (not batch means) are fed so epoch values are exact
        per-record averages even with a ragged last batch.
        """
        loss = losses.weighted_negative_elbo(terms, beta)
        values = [loss, terms["reconstruction_nll"], terms["kl"], -terms["score"]]
        weight = None
        if self.skip_nonfinite:
            # Skipped (non-finite) records must not turn the epoch means into NaN.
            weight = ops.cast(ops.isfinite(loss), "float32")
            values = [ops.where(weight > 0, v, ops.zeros_like(v)) for v in values]
        trackers = self.metrics[:4]
        for tracker, value in zip(trackers, values, strict=True):
            tracker.update_state(value, sample_weight=weight)
        self.beta_tracker.update_state(beta)
        return {m.name: m.result() for m in self.metrics}

    # ------------------------------------------------------------ serialization
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (plus Keras' name/trainable/dtype)."""
        config = super().get_config()
        config.update(
            {
                "layout": self.layout.to_config(),
                "latent_dim": self.latent_dim,
                "hidden_units": list(self.hidden_units),
                "activation": self.activation,
                "beta": self.beta,
                "kl_warmup_epochs": self.kl_warmup_epochs,
                "min_log_var": self.min_log_var,
                "max_log_var": self.max_log_var,
                "seed": self.seed,
                "numeric_variance": self.numeric_variance,
                "score_tolerance": self.score_tolerance,
                "trim_fraction": self.trim_fraction,
                "trim_start_epoch": self.trim_start_epoch,
            }
        )
        return config


def exact_float32_matmuls() -> contextlib.AbstractContextManager:
    """Full float32 matrix products while tracing the scoring path (JAX backend).

    On NVIDIA GPUs JAX runs float32 matmuls as TF32 by default (a 10-bit mantissa); the
    rounding then depends on the kernel a batch size selects, so a record's score changed
    with the batch it was scored in (about 1e-3 relative on an H100). Scores are compared
    with a calibrated threshold and must not. Training keeps the fast default. For the
    TensorFlow backend the scoring worker switches TF32 off (`pipeline.inference`).
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_matmul_precision("highest")
    return contextlib.nullcontext()


def _compiled_scoring(model: VAE, mc_samples: int, jit_compile: bool) -> Callable:
    """`VAE.scoring_function` for the backend in use."""
    if keras.backend.backend() != "jax":
        return _tensorflow_scoring(model, mc_samples, jit_compile)
    import jax

    def pure(trainable, non_trainable, x):
        # stateless_call -> call -> the deterministic terms: the weights are arguments, not
        # constants baked into the program, so a model trained further scores as it is now.
        terms, _ = model.stateless_call(trainable, non_trainable, x)
        return terms

    jitted = jax.jit(pure)

    def run_jax(x: Any) -> dict[str, Any]:
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return jitted(trainable, non_trainable, ops.convert_to_tensor(x, "float32"))

    return run_jax


def _tensorflow_scoring(model: VAE, mc_samples: int, jit_compile: bool) -> Callable:
    """One graph for every batch size; with `jit_compile` its network part is an XLA cluster."""
    import tensorflow as tf

    if jit_compile and mc_samples == 0:
        network = tf.function(model._scoring_network, jit_compile=True)

        def body(x):
            return model._terms_at_mean(x, *network(x))
    else:

        def body(x):
            return model._deterministic_terms(x, mc_samples)

    spec = tf.TensorSpec((None, 2 * model.layout.width), tf.float32)
    traced = tf.function(body, input_signature=[spec])
    return lambda x: traced(tf.convert_to_tensor(x, tf.float32))


def _outputs(terms: Mapping[str, Any], z_mean: Any) -> dict[str, Any]:
    return {
        "score": terms["negative_elbo"],
        "reconstruction_nll": terms["reconstruction_nll"],
        "kl": terms["kl"],
        "feature_nll": terms["feature_nll"],
        "z_mean": z_mean,
    }


def _build_stack(layers: Sequence[keras.layers.Layer], in_dim: int) -> int:
    """Builds Dense layers in sequence; returns the output width."""
    for layer in layers:
        layer.build((None, in_dim))
        in_dim = layer.units
    return in_dim


# ----------------------------------------------------------------- validation
def _check_backend() -> None:
    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise NotImplementedError(
            f"VAE supports the backends {SUPPORTED_BACKENDS}. Received: backend={backend}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name} must be positive. Received: {name}={value!r}")
    return int(value)


def _non_negative_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer. Received: {name}={value!r}")
    return int(value)


def _non_negative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number. Received: {name}={value!r}")
    return float(value)


def _as_seq(hidden_units: Any) -> Sequence[Any]:
    if isinstance(hidden_units, str | bytes) or not isinstance(hidden_units, Sequence):
        raise ValueError(
            f"hidden_units must be a sequence of positive ints. Received: "
            f"hidden_units={hidden_units!r}"
        )
    return hidden_units


def _check_activation(activation: Any) -> str:
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError) as err:
        raise ValueError(f"Unknown activation. Received: activation={activation!r}") from err
    if not isinstance(activation, str):
        # Only names are JSON-serializable in get_config.
        raise ValueError(f"activation must be a name. Received: activation={activation!r}")
    return activation


def _check_log_var_range(min_log_var: Any, max_log_var: Any) -> tuple[float, float]:
    for name, value in (("min_log_var", min_log_var), ("max_log_var", max_log_var)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number. Received: {name}={value!r}")
    if not min_log_var < max_log_var:
        raise ValueError(
            "min_log_var must be < max_log_var. "
            f"Received: min_log_var={min_log_var}, max_log_var={max_log_var}"
        )
    return float(min_log_var), float(max_log_var)
