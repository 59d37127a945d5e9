"""Parquet files in chunk_rows batches; tf.Example records, a corrupt one dead-lettered."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq

from configs import load_config
from pipeline.sources.columnar import parquet_chunks, parse_examples

DATA = load_config().data


def test_parquet_chunks_in_chunk_rows_batches(tmp_path):
    path = str(tmp_path / "t.parquet")
    pq.write_table(
        pa.table({"x": [float(i) for i in range(7)], "n": [1, None, 3, 4, 5, 6, 7]}), path
    )
    chunks = [c for c, _ in parquet_chunks(path, dataclasses.replace(DATA, chunk_rows=3))]
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert chunks[1].record_ids == [f"{path}:4", f"{path}:5", f"{path}:6"]
    assert chunks[0].frame["n"].tolist() == [1, None, 3]  # an int stays an int, null is None
    assert chunks[0].raw[1] == '{"x": 1.0, "n": null}'


def test_parquet_ids_from_an_integer_id_column(tmp_path):
    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"id": [10, 11], "x": [0.5, 1.5]}), path)
    ((chunk, dead),) = list(parquet_chunks(path, dataclasses.replace(DATA, id_column="id")))
    assert chunk.record_ids == ["10", "11"] and dead == []


def _example(**features) -> bytes:
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if isinstance(value, float):
            feature.float_list.value.append(value)
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        else:
            feature.bytes_list.value.append(value.encode())
    return example.SerializeToString()


def test_parse_examples_and_a_corrupt_payload():
    records = [(1, _example(x=1.5, n=3, c="a")), (2, b"\xff\xff not a proto"), (3, _example(x=2.5))]
    chunk, dead = parse_examples(records, "f.tfrecord", DATA)
    assert chunk.record_ids == ["f.tfrecord:1", "f.tfrecord:3"]
    assert chunk.frame["x"].tolist() == [1.5, 2.5]
    assert chunk.frame["n"].tolist() == [3, None]
    assert chunk.frame["c"].tolist() == ["a", None]
    (letter,) = dead
    assert (letter.record_id, letter.reason, letter.stage) == (
        "f.tfrecord:2",
        "bad_example",
        "parse",
    )
    assert "not a proto" in letter.raw


def test_only_corrupt_payloads_is_no_chunk():
    chunk, dead = parse_examples([(1, b"\x0a\x05broken")], "s", DATA)
    assert chunk is None and [d.reason for d in dead] == ["bad_example"]
