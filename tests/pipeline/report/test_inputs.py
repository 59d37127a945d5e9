"""What the report reads: Parquet folders, the kept epoch, missing outputs, and score outputs
read a batch at a time (exact when small, a seeded sample of score rows past the cap)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.report.inputs import (
    SCORE_COLUMNS,
    kept_epoch,
    parquet_files,
    read_bytes_or_none,
    read_parquet,
    read_scores,
)
from pipeline.scoring.outputs import codes_schema, codes_table, dequantize, flags_schema
from pipeline.sinks.parquet import dead_letter_schema

SCALE = np.array([0.5, 0.25, 0.125])


def test_kept_epoch_is_the_lowest_validation_loss_after_warmup():
    history = {"val_loss": [1.0, 5.0, 4.0, 3.0, 3.5]}
    assert kept_epoch(history, warmup_epochs=0) == 1
    assert kept_epoch(history, warmup_epochs=3) == 4  # epochs 1-2 are in the warm-up
    assert kept_epoch({"val_loss": [2.0, float("nan"), 1.0]}, 0) == 3  # NaN is never kept
    assert kept_epoch({}, 0) is None
    assert kept_epoch({"val_loss": [2.0, 1.0]}, warmup_epochs=10) == 2


def test_read_parquet_joins_the_files_of_a_folder(tmp_path):
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"a": [3]}), tmp_path / "part-1.parquet")
    (tmp_path / "part-2.parquet").write_bytes(b"")  # an empty file (a shard being written)
    assert [p.rsplit("/", 1)[-1] for p in parquet_files(str(tmp_path))] == [
        "part-0.parquet",
        "part-1.parquet",
    ]
    table = read_parquet(str(tmp_path))
    assert table.column("a").to_pylist() == [1, 2, 3]
    assert table.column("b").to_pylist() == ["x", "y", None]
    only = read_parquet(str(tmp_path), columns=["b", "not_there"])
    assert only.column_names == ["b"]


def test_read_parquet_of_an_empty_folder_is_none(tmp_path):
    assert read_parquet(str(tmp_path)) is None


def test_read_scores_of_a_folder_without_flags_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no flags under .*: is it a score output"):
        read_scores(str(tmp_path))


def test_read_bytes_or_none(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert read_bytes_or_none(str(tmp_path / "f")) == b"abc"
    assert read_bytes_or_none(str(tmp_path / "gone")) is None


# ------------------------------------------------------------------- score outputs


def _flags(ids: list[str], rng: np.random.Generator) -> pa.Table:
    n = len(ids)
    score = np.round(rng.gamma(4.0, 2.0, n), 1)  # rounded: ties, broken by row order
    columns = {
        "record_id": ids,
        "score": score,
        "reconstruction_nll": score * 0.7,
        "kl": score * 0.3,
        "p_value": rng.random(n),
        "is_anomaly": score > 15.0,
        "top_feature_1": [f"f{i % 3}" for i in range(n)],
        "top_contribution_1": rng.normal(size=n),
        "label": [str(i % 2) for i in range(n)],
    }
    return pa.table(columns, schema=flags_schema(1, ("label",)))


def score_output(root, sizes=(700, 550, 0, 300), seed=0):
    """A score output of several flags files (small row groups, one empty), codes in another
    order with one id missing and one twice, and dead letters over two files; returns the
    flags as one table and the codes by id (the first of a repeated id)."""
    rng = np.random.default_rng(seed)
    (root / "flags").mkdir(parents=True)
    tables, start = [], 0
    for k, n in enumerate(sizes):
        table = _flags([f"r{start + i:05d}" for i in range(n)], rng)
        pq.write_table(table, root / "flags" / f"part-{k}.parquet", row_group_size=128)
        tables.append(table)
        start += n
    flags = pa.concat_tables(tables)
    flags = flags.set_column(1, "score", pa.array(_with_nan(flags.column("score"))))
    _rewrite(root / "flags", flags, sizes)
    ids = flags.column("record_id").to_pylist()
    order = rng.permutation(len(ids))
    code_ids = [ids[i] for i in order if i != 5] + [ids[9]]  # r00005: no code; r00009 twice
    code = rng.integers(-100, 100, (len(code_ids), len(SCALE)), dtype=np.int8)
    schema = codes_schema(len(SCALE), "int8", SCALE)
    (root / "codes").mkdir()
    half = len(code_ids) // 2
    for k, (a, b) in enumerate([(0, half), (half, len(code_ids))]):
        table = codes_table(code_ids[a:b], code[a:b], schema)
        pq.write_table(table, root / "codes" / f"part-{k}.parquet", row_group_size=100)
    by_id = {}
    for record_id, row in zip(code_ids, code, strict=True):
        by_id.setdefault(record_id, dequantize(row[None], SCALE, "int8")[0])
    (root / "dead_letter").mkdir()
    for k, reasons in enumerate([["bad_utf8"] * 3 + ["column_count"], ["column_count"] * 4]):
        dead = {name: [f"{name}{k}{i}" for i in range(len(reasons))]
                for name in dead_letter_schema().names}  # fmt: skip
        dead["reason"] = reasons
        pq.write_table(pa.table(dead, schema=dead_letter_schema()),
                       root / "dead_letter" / f"part-{k}.parquet")  # fmt: skip
    (root / "summary.json").write_text(json.dumps({"rows_scored": len(ids)}))
    return flags, by_id


def _with_nan(score: pa.ChunkedArray) -> np.ndarray:
    values = score.to_numpy().copy()
    values[[3, 600]] = np.nan  # a NaN score ranks below every number
    return values


def _rewrite(folder, flags: pa.Table, sizes) -> None:
    start = 0
    for k, n in enumerate(sizes):
        pq.write_table(flags.slice(start, n), folder / f"part-{k}.parquet", row_group_size=128)
        start += n


def _top(flags: pa.Table, n: int) -> list[str]:
    score = np.nan_to_num(flags.column("score").to_numpy(), nan=-np.inf)
    order = np.argsort(-score, kind="stable")[:n]
    return [flags.column("record_id")[int(i)].as_py() for i in order]


def _codes_of(ids, by_id) -> np.ndarray:
    nan = np.full(len(SCALE), np.nan, np.float32)
    return np.array([by_id.get(i, nan) for i in ids], np.float32).reshape(-1, len(SCALE))


@pytest.mark.parametrize("batch_rows", [64, 100_000])
def test_a_small_output_is_read_exactly(tmp_path, batch_rows):
    flags, by_id = score_output(tmp_path)
    facts = read_scores(str(tmp_path), top_n=25, max_points=200, variance_rows=500,
                        batch_rows=batch_rows)  # fmt: skip
    n = flags.num_rows
    assert (facts.rows, facts.sampled) == (n, False)
    for c in SCORE_COLUMNS:  # every row, in the files' order
        np.testing.assert_array_equal(facts.scores[c], flags.column(c).to_numpy())
    assert facts.flagged == int(np.sum(flags.column("is_anomaly").to_numpy()))
    for c in ("kl", "reconstruction_nll"):
        assert facts.means[c] == pytest.approx(np.nanmean(flags.column(c).to_numpy()), 1e-12)
    # The top rows: every column, highest score first, ties to the earlier row.
    assert facts.top.column("record_id").to_pylist() == _top(flags, 25)
    assert facts.top.column_names == flags.column_names
    assert facts.top.column("label").to_pylist() == [
        flags.column("label")[int(i[1:])].as_py() for i in _top(flags, 25)
    ]
    # Codes of the sampled rows and of the top rows, looked up by id.
    assert len(facts.sample_index) == 200 and np.all(np.diff(facts.sample_index) > 0)
    ids = np.array(flags.column("record_id").to_pylist(), dtype=object)
    np.testing.assert_array_equal(facts.sample_codes, _codes_of(ids[facts.sample_index], by_id))
    np.testing.assert_array_equal(facts.top_codes, _codes_of(_top(flags, 25), by_id))
    assert facts.code_dtype == "int8" and facts.code_variance.shape == (len(SCALE),)
    assert facts.dead_reasons == {"column_count": 5, "bad_utf8": 3}
    assert [d["record_id"] for d in facts.dead_examples] == [
        "record_id00", "record_id01", "record_id02", "record_id03",
        "record_id10", "record_id11", "record_id12", "record_id13",
    ]  # fmt: skip


def test_an_id_without_a_code_is_nan_and_a_repeated_id_takes_the_first(tmp_path):
    flags, by_id = score_output(tmp_path)
    facts = read_scores(str(tmp_path), max_points=10_000, batch_rows=50)
    ids = flags.column("record_id").to_pylist()
    assert np.isnan(facts.sample_codes[ids.index("r00005")]).all()
    np.testing.assert_array_equal(facts.sample_codes[ids.index("r00009")], by_id["r00009"])


def test_past_the_cap_scores_are_a_seeded_sample_and_totals_count_every_row(tmp_path):
    flags, _ = score_output(tmp_path)
    n = flags.num_rows
    facts = read_scores(str(tmp_path), top_n=10, max_points=50, max_rows=400, batch_rows=64)
    assert (facts.rows, len(facts.scores["score"]), facts.sampled) == (n, 400, True)
    # The sampled rows are rows of the output (p-values are unique: they name their row).
    position = {value: i for i, value in enumerate(flags.column("p_value").to_numpy())}
    kept = np.array([position[v] for v in facts.scores["p_value"]])
    assert np.all(np.diff(kept) > 0)  # in the files' order
    for c in SCORE_COLUMNS:
        np.testing.assert_array_equal(facts.scores[c], flags.column(c).to_numpy()[kept])
    # ... spread over the whole output, not its first rows.
    assert kept.max() > 0.9 * n and kept.min() < 0.1 * n
    # Totals and the top rows are exact, over every row.
    assert facts.flagged == int(np.sum(flags.column("is_anomaly").to_numpy()))
    assert facts.means["kl"] == pytest.approx(np.nanmean(flags.column("kl").to_numpy()), 1e-12)
    assert facts.top.column("record_id").to_pylist() == _top(flags, 10)
    again = read_scores(str(tmp_path), top_n=10, max_points=50, max_rows=400, batch_rows=500)
    np.testing.assert_array_equal(again.scores["p_value"], facts.scores["p_value"])
    np.testing.assert_array_equal(again.sample_codes, facts.sample_codes)


def test_an_output_of_no_rows(tmp_path):
    (tmp_path / "flags").mkdir()
    pq.write_table(_flags([], np.random.default_rng(0)), tmp_path / "flags" / "p.parquet")
    facts = read_scores(str(tmp_path))
    assert facts.rows == 0 and facts.top.num_rows == 0 and len(facts.scores["score"]) == 0
    assert facts.dead_reasons == {} and facts.code_dtype == "none"
