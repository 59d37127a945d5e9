"""All categorical features at once (`vae_model.categorical`): the vectorized one-hot, NLL and
argmax equal a per-feature reference, and a wide table's graph does not grow with its columns.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from vae_model import VAE, FeatureLayout, likelihoods, losses, pack
from vae_model.categorical import CategoricalPlan, plan_for

BACKEND = keras.backend.backend()

CARDINALITY_SETS = {
    "binary": (3,) * 40,  # a wide binary table: one contiguous run, no gather
    "mixed": (2, 5, 3, 3, 17, 4, 2, 9, 3, 1000, 3, 6, 8, 3),
    "contiguous-mixed-bucket": (3, 4, 3, 4, 7, 5),  # one bucket, padded, no reordering
    "reordered": (3, 3, 5, 3, 2, 2, 3),
}


def np_(x):
    return ops.convert_to_numpy(x)


def offsets(cards):
    return np.concatenate([[0], np.cumsum(cards)]).astype(int)


def random_case(cards, batch=7, seed=0):
    rng = np.random.default_rng(seed)
    logits = (3.0 * rng.normal(size=(batch, sum(cards)))).astype(np.float32)
    index = np.stack([rng.integers(0, c, size=batch) for c in cards], axis=1).astype(np.float32)
    mask = (rng.random(index.shape) >= 0.3).astype(np.float32)
    return logits, index, mask


def reference_nll(index, logits, cards):
    """logsumexp(logits_j) - logits_j[index_j], one feature at a time (float64)."""
    bounds, out = offsets(cards), []
    for j in range(len(cards)):
        block = logits[:, bounds[j] : bounds[j + 1]].astype(np.float64)
        m = block.max(-1)
        lse = m + np.log(np.exp(block - m[:, None]).sum(-1))
        idx = index[:, j].astype(int)
        inside = (idx >= 0) & (idx < cards[j])
        picked = np.where(inside, block[np.arange(len(idx)), np.clip(idx, 0, cards[j] - 1)], 0.0)
        out.append(lse - picked)
    return np.stack(out, axis=1)


def reference_onehot(index, mask, cards):
    parts = []
    for j, card in enumerate(cards):
        idx = index[:, j].astype(int)
        hot = (idx[:, None] == np.arange(card)[None, :]).astype(np.float32)
        parts.append(hot * mask[:, j : j + 1])
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("name", sorted(CARDINALITY_SETS))
def test_vectorized_nll_equals_the_per_feature_reference(name):
    cards = CARDINALITY_SETS[name]
    logits, index, _ = random_case(cards)
    got = np_(CategoricalPlan(cards).nll(index, logits))
    assert got.shape == (7, len(cards))
    np.testing.assert_allclose(got, reference_nll(index, logits, cards), rtol=1e-5, atol=1e-5)
    # ... and the single-feature likelihood the model used before, feature by feature.
    bounds = offsets(cards)
    for j in range(len(cards)):
        one = np_(likelihoods.categorical_nll(index[:, j], logits[:, bounds[j] : bounds[j + 1]]))
        np.testing.assert_allclose(got[:, j], one, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CARDINALITY_SETS))
def test_out_of_range_indices_select_nothing_as_before(name):
    # Not valid input (validate_packed rejects it), but it must not change meaning: an index
    # past a feature's cardinality, even one landing on another feature's padding, or below
    # 0, selects no logit, as one_hot did per feature.
    cards = CARDINALITY_SETS[name]
    logits, index, _ = random_case(cards, seed=3)
    index[0] = np.asarray(cards, np.float32)  # just past each cardinality
    index[1] = -1.0
    index[2] = np.asarray(cards, np.float32) + 1.0
    got = np_(CategoricalPlan(cards).nll(index, logits))
    np.testing.assert_allclose(got, reference_nll(index, logits, cards), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name", sorted(CARDINALITY_SETS))
def test_vectorized_onehot_and_argmax_equal_the_per_feature_reference(name):
    cards = CARDINALITY_SETS[name]
    logits, index, mask = random_case(cards, seed=1)
    index[3, 0] = cards[0]  # out of range: an all-zero one-hot, as one_hot gives
    plan = CategoricalPlan(cards)
    got = np_(plan.onehot(index, mask))
    np.testing.assert_array_equal(got, reference_onehot(index, mask, cards))
    bounds = offsets(cards)
    expected = np.stack(
        [logits[:, bounds[j] : bounds[j + 1]].argmax(-1) for j in range(len(cards))], axis=1
    )
    np.testing.assert_array_equal(np_(plan.argmax(logits)), expected)
    split = [np_(part) for part in plan.split(logits)]
    assert [part.shape[1] for part in split] == list(cards)
    np.testing.assert_array_equal(np.concatenate(split, axis=1), logits)


def test_buckets_bound_padding_and_groups():
    plan = CategoricalPlan(CARDINALITY_SETS["mixed"])
    for group in plan.groups:
        cards = np.asarray(plan.cardinalities)[group.features]
        assert np.all(group.width < 2 * cards) and group.width == cards.max()
    assert len(plan.groups) <= int(np.ceil(np.log2(1000)))
    # A wide binary table is one slice and reshape: no gather, no padding, no reordering.
    (binary,) = CategoricalPlan((3,) * 1555).groups
    assert binary.column_run == (0, 3 * 1555) and binary.columns is None and binary.valid is None
    assert CategoricalPlan((3,) * 1555).to_layout_order is None
    assert plan_for((3, 3)) is plan_for((3, 3))
    with pytest.raises(ValueError, match="cardinalities must be >= 2"):
        CategoricalPlan((3, 1))


def _gradient(fn, logits):
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda lg: fn(lg).sum())(logits))
    import tensorflow as tf

    logits = tf.convert_to_tensor(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        total = tf.reduce_sum(fn(logits))
    return tape.gradient(total, logits).numpy()


@pytest.mark.parametrize("name", sorted(CARDINALITY_SETS))
def test_vectorized_nll_gradient_is_softmax_minus_onehot_per_feature(name):
    # Padding must take no gradient and must not shift any feature's softmax.
    cards = CARDINALITY_SETS[name]
    logits, index, _ = random_case(cards, seed=2)
    plan = CategoricalPlan(cards)
    got = _gradient(lambda lg: plan.nll(index, lg), logits)
    bounds, expected = offsets(cards), np.zeros_like(logits)
    for j, card in enumerate(cards):
        block = logits[:, bounds[j] : bounds[j + 1]].astype(np.float64)
        soft = np.exp(block - block.max(-1, keepdims=True))
        soft /= soft.sum(-1, keepdims=True)
        expected[:, bounds[j] : bounds[j + 1]] = soft - np.eye(card)[index[:, j].astype(int)]
    np.testing.assert_allclose(got, expected, atol=1e-5)


MIXED = FeatureLayout(
    numeric=("a", "b"),
    categorical=tuple((f"c{j}", c) for j, c in enumerate(CARDINALITY_SETS["mixed"])),
)


def _mixed_records(n, seed):
    logits, index, mask = random_case(MIXED.cardinalities, batch=n, seed=seed)
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n, 2)).astype(np.float32)
    num_mask = (rng.random((n, 2)) >= 0.2).astype(np.float32)
    values = np.concatenate([numeric, index], axis=1)
    full_mask = np.concatenate([num_mask, mask], axis=1)
    values[full_mask == 0] = np.nan  # missing placeholders must not leak
    return pack(values, full_mask), values, full_mask


def test_feature_nll_masks_and_matches_the_reference_and_the_list_form():
    x, values, mask = _mixed_records(9, seed=4)
    logits, _, _ = random_case(MIXED.cardinalities, batch=9, seed=5)
    outputs = {
        "numeric_mu": np.zeros((9, 2), np.float32),
        "numeric_log_var": np.zeros((9, 2), np.float32),
        "categorical_logits": logits,
    }
    got = np_(losses.feature_nll(x, outputs, MIXED))
    index = np.where(mask[:, 2:] > 0, values[:, 2:], 0.0)
    expected = reference_nll(index, logits, MIXED.cardinalities) * mask[:, 2:]
    np.testing.assert_allclose(got[:, 2:], expected, rtol=1e-5, atol=1e-5)
    assert np.all(got[mask == 0] == 0.0) and np.all(np.isfinite(got))
    # The per-feature list `decode` used to return gives the same NLL.
    as_list = {**outputs, "categorical_logits": CategoricalPlan(MIXED.cardinalities).split(logits)}
    np.testing.assert_allclose(np_(losses.feature_nll(x, as_list, MIXED)), got, rtol=1e-6)


def test_encoder_input_equals_the_per_feature_reference():
    model = VAE(MIXED, latent_dim=2, hidden_units=(4,), seed=0)
    x, values, mask = _mixed_records(9, seed=6)
    got = np_(model._encoder_features(ops.convert_to_tensor(x)))
    observed = np.where(mask > 0, values, 0.0)
    expected = np.concatenate(
        [
            observed[:, :2],
            mask[:, :2],
            reference_onehot(observed[:, 2:], mask[:, 2:], MIXED.cardinalities),
        ],
        axis=1,
    )
    np.testing.assert_array_equal(got, expected)
    # Reconstruction picks each feature's own argmax.
    z = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    decoded = model.reconstruct_from_code(z)
    logits = np_(model.decode(z)["categorical_logits"])
    bounds = offsets(MIXED.cardinalities)
    for j in range(MIXED.n_categorical):
        block = logits[:, bounds[j] : bounds[j + 1]]
        np.testing.assert_array_equal(decoded[:, 2 + j], block.argmax(-1))


@pytest.mark.parametrize(
    "cardinalities",
    [(3,) * 2000, tuple(2 + j % 5 for j in range(2000))],
    ids=["binary", "mixed"],
)
def test_a_wide_layout_builds_trains_and_scores(cardinalities):
    layout = FeatureLayout(
        numeric=("n0", "n1"),
        categorical=tuple((f"c{j}", c) for j, c in enumerate(cardinalities)),
    )
    rng = np.random.default_rng(0)
    index = np.stack([rng.integers(0, c, size=64) for c in cardinalities], axis=1)
    values = np.concatenate([rng.normal(size=(64, 2)), index], axis=1)
    x = pack(values, rng.random(values.shape) >= 0.05)
    keras.utils.set_random_seed(0)
    model = VAE(layout, latent_dim=4, hidden_units=(16,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    terms = {k: np_(v) for k, v in model.score_terms(x[:5]).items()}
    assert terms["feature_nll"].shape == (5, 2002) and terms["score"].shape == (5,)
    assert np.all(np.isfinite(terms["feature_nll"]))
    assert np_(model.decode(terms["z_mean"])["categorical_logits"]).shape == (5, sum(cardinalities))
    assert model.reconstruct_from_code(terms["z_mean"]).shape == (5, 2002)


def _traced_op_count(layout):
    """Operations in the traced training forward pass (loss included)."""
    model = VAE(layout, latent_dim=2, hidden_units=(4,), seed=0)

    x = np.zeros((3, layout.input_dim), np.float32)
    if BACKEND == "jax":
        import jax

        def stateless(trainable, non_trainable, x):
            terms, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            return losses.training_loss(terms, 1.0)

        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )
        return len(jax.make_jaxpr(stateless)(*state, x).eqns)

    def forward(x):
        return losses.training_loss(model(x, training=True), 1.0)

    import tensorflow as tf

    spec = tf.TensorSpec((None, layout.input_dim), tf.float32)
    return len(tf.function(forward).get_concrete_function(spec).graph.get_operations())


@pytest.mark.parametrize("cards", [(3,), (3, 5, 2, 17, 4)], ids=["binary", "mixed"])
def test_the_traced_graph_does_not_grow_with_the_columns(cards):
    def layout(n):
        return FeatureLayout(
            numeric=("a",), categorical=tuple((f"c{j}", cards[j % len(cards)]) for j in range(n))
        )

    small, wide = _traced_op_count(layout(10)), _traced_op_count(layout(500))
    assert wide == small, (small, wide)
