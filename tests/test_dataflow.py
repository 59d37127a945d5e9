"""Dataflow without a cloud: the real pipelines translated offline (DataflowRunner --dry_run),
BigQuery rows as record chunks, partitioned scheduled runs, and the scoring job on the
multi-process DirectRunner."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.runner import PipelineState
from apache_beam.testing.util import assert_that, equal_to

from configs import builtin_config_path, load_config
from configs.schema import DataConfig
from pipeline.artifacts.bundle import load_bundle
from pipeline.artifacts.shards import SPLITS, PreparedPaths
from pipeline.cli import EXIT_BAD_INPUT, IMAGE_VARIABLE, build_parser, flex_template_argv, main
from pipeline.core.bigquery_refs import partition_decorator
from pipeline.core.records import DeadLetter
from pipeline.jobs.prepare import build_prepare_pipeline
from pipeline.jobs.run import resolve_partition, run_partition
from pipeline.jobs.score import build_score_pipeline
from pipeline.scoring import outputs as postprocess
from pipeline.sinks.bigquery import BigQueryOutput, bigquery_schema, table_rows
from pipeline.sources.bigquery import RowsToChunks, rows_to_chunk
from pipeline.sources.columnar import parse_arrow_batch

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "us-central1-docker.pkg.dev/vaepipe-test/vaepipe/vaepipe:test"
DATAFLOW = [
    "--runner=DataflowRunner",
    "--dry_run=True",  # translate and stop: no project, credentials or network needed
    "--project=vaepipe-test",
    "--region=us-central1",
    "--temp_location=gs://vaepipe-test/tmp",
]
GPU_OPTION = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
GPU = ["--machine_type=g2-standard-4", f"--dataflow_service_options={GPU_OPTION}"]


def _translate(build, args: list[str]):
    root = beam.Pipeline(options=PipelineOptions(args))
    build(root)
    result = root.run()
    assert result.state == PipelineState.DONE
    return result


def _steps(result) -> set[str]:
    return {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}


def _display_values(result) -> list[str]:
    values = []
    for transform in result.job.proto_pipeline.components.transforms.values():
        for item in transform.display_data:
            payload = beam_runner_api_pb2.LabelledPayload.FromString(item.payload)
            values.append(payload.string_value)
    return values


def _container_images(result) -> set[str]:
    images = set()
    for environment in result.job.proto_pipeline.components.environments.values():
        payload = beam_runner_api_pb2.DockerPayload.FromString(environment.payload)
        images.add(payload.container_image)
    return images


def _staged_files(result) -> dict[str, str]:
    """Staged name -> local file of each artifact the job would upload."""
    files = {}
    for environment in result.job.proto_pipeline.components.environments.values():
        for artifact in environment.dependencies:
            role = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                artifact.role_payload
            )
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload)
            files[role.staged_name] = path.path
    return files


# ------------------------------------------------------------------- Dataflow translation


def test_training_statistics_pipeline_translates_for_dataflow():
    config = load_config([builtin_config_path("tabular")], ["data.id_column=id"])
    paths = PreparedPaths("gs://vaepipe-test/job/model/_work")
    result = _translate(
        lambda root: build_prepare_pipeline(
            root, "gs://vaepipe-test/data/train-*.csv", config, paths
        ),
        DATAFLOW + [f"--sdk_container_image={IMAGE}"],
    )
    steps = _steps(result)
    expected = {
        "ReadRecords/MatchFiles",
        "ReadRecords/ParseFiles",
        "ProfileColumns",
        "DecideColumns",
        "ApplyKinds",
        "ComputeStatistics",
        "DeriveEncoding",
        "WriteStatistics",
        "WriteSchema",
        "WriteEncoding",
        "Encode",
        "WriteDeadLetters",
    } | {f"WriteShards/Write{split.title()}Shards" for split in SPLITS}
    assert expected <= steps, sorted(expected - steps)
    assert _container_images(result) == {IMAGE}


def test_scoring_pipeline_translates_for_dataflow_with_setup_file(model_dir):
    """The package as a --setup_file sdist (no custom image): it builds and carries the pins."""
    bundle = load_bundle(str(model_dir), load_model=False)
    config = load_config([model_dir / "config.yaml"])
    staging = "gs://vaepipe-test/job/scores/.staging-test"
    result = _translate(
        lambda root: build_score_pipeline(
            root, "gs://vaepipe-test/batch/*.csv", bundle, config, staging
        ),
        DATAFLOW + [f"--setup_file={ROOT / 'setup.py'}"],
    )
    expected = {
        "ReadRecords/MatchFiles",
        "ApplyKinds",
        "Encode",
        "RunInference",
        "ToOutputs",
        "WriteFlags",
        "WriteCodes",
        "WriteDeadLetters",
    }
    assert expected <= _steps(result)
    # Workers pip-install the sdist Beam builds from setup.py; setup.py reads the pins there.
    with tarfile.open(_staged_files(result)["workflow.tar.gz"]) as sdist:
        names = {name.split("/", 1)[-1] for name in sdist.getnames()}
    assert {"setup.py", "requirements.txt", "requirements-test.txt"} <= names
    assert {
        "pipeline/sources/bigquery.py",
        "vae_model/__init__.py",
        "configs/tabular.yaml",
    } <= names
    assert "vaepipe/__init__.py" in names


def test_image_jobs_translate_for_dataflow_without_listing_gs_at_construction(
    image_model_dir, monkeypatch
):
    """An image folder on gs:// is listed by the job's MatchFiles, never while the graph is
    built (a bucket of millions of images would stall the launcher)."""
    from apache_beam.io.filesystems import FileSystems

    def no_listing(patterns, *args, **kwargs):
        raise AssertionError(f"listed {patterns} while building the graph")

    monkeypatch.setattr(FileSystems, "match", no_listing)
    config = load_config([builtin_config_path("image")])
    paths = PreparedPaths("gs://vaepipe-test/job/model/_work")
    args = DATAFLOW + [f"--sdk_container_image={IMAGE}"]
    result = _translate(
        lambda root: build_prepare_pipeline(root, "gs://vaepipe-test/images/", config, paths), args
    )
    expected = {
        "ReadRecords/MatchFiles",
        "ReadRecords/DecodeImages",
        "ReadRecords/Batch",
        "ComputeStatistics",
        "WriteSchema",
        "WriteEncoding",
        "Encode",
        "WriteDeadLetters",
    } | {f"WriteShards/Write{split.title()}Shards" for split in SPLITS}
    assert expected <= _steps(result), sorted(expected - _steps(result))

    bundle = load_bundle(str(image_model_dir), load_model=False)
    scoring = load_config([image_model_dir / "config.yaml"])
    staging = "gs://vaepipe-test/job/scores/.staging-test"
    result = _translate(
        lambda root: build_score_pipeline(
            root, "gs://vaepipe-test/batch/", bundle, scoring, staging
        ),
        args,
    )
    expected = {"ReadRecords/DecodeImages", "Encode", "RunInference", "WriteFlags", "WriteCodes"}
    assert expected <= _steps(result), sorted(expected - _steps(result))
    assert "ApplyKinds" not in _steps(result)


def test_flex_template_launch_translates_a_bigquery_partition_job(model_dir, tmp_path):
    """What the template's launcher does, end to end: parameters -> `vaepipe run --no-wait`
    -> a job reading a BigQuery query of the partition and loading the partition's tables."""
    query = "SELECT * FROM `vaepipe-test.raw.events` WHERE day = '{partition}'"
    parameters = [
        "--input=bq://query",
        f"--output={tmp_path}",
        f"--model={model_dir}",
        "--bigquery_output=bq://vaepipe-test.scores",
        "--partition=2026-11-26",
        f"--set=data.bigquery_query={query}",
    ]
    argv = flex_template_argv(parameters + DATAFLOW + GPU, {IMAGE_VARIABLE: IMAGE})
    args, beam_args = build_parser().parse_known_args(argv)
    result = run_partition(args, beam_args)

    steps = _steps(result)
    expected = {
        "ReadRecords/ReadBigQuery/ReadFromBigQuery",
        "ReadRecords/ReadBigQuery/RowsToChunks",
        "RunInference",
        "WriteFlags/WriteToBigQuery/BigQueryBatchFileLoads",
        "WriteCodes/WriteToBigQuery/BigQueryBatchFileLoads",
        "WriteDeadLetters/WriteToBigQuery/BigQueryBatchFileLoads",
    }
    assert expected <= steps, sorted(expected - steps)
    tables = {v for v in _display_values(result) if v.startswith("vaepipe-test:scores.")}
    names = ("flags", "codes", "dead_letter")
    assert tables == {f"vaepipe-test:scores.{name}$20261126" for name in names}
    assert _container_images(result) == {IMAGE}
    options = result.job.options.view_as(GoogleCloudOptions)
    assert options.dataflow_service_options == [GPU_OPTION]
    saved = (tmp_path / "scores" / "partition=2026-11-26" / "config.yaml").read_text()
    assert "day = '2026-11-26'" in saved  # the query was filled in for this partition


def test_no_wait_refuses_what_it_cannot_do(model_dir, data_dir, tmp_path, capsys):
    base = ["run", "--no-wait", "--input", str(data_dir / "normal.csv"), "--output", str(tmp_path)]
    assert main(base + ["--model", str(model_dir)]) == EXIT_BAD_INPUT
    assert "--bigquery-output" in capsys.readouterr().err
    tables = ["--bigquery-output", "bq://p.d"]
    assert main(base + tables) == EXIT_BAD_INPUT  # no model under OUTPUT/model
    assert "vaepipe train" in capsys.readouterr().err
    with_model = base + tables + ["--model", str(model_dir)]
    assert main(with_model + ["--set", "schema.on_anomaly=fail"]) == EXIT_BAD_INPUT
    assert "validate" in capsys.readouterr().err
    assert main(with_model + ["--partition", "batch-7"]) == EXIT_BAD_INPUT  # tables need a day
    assert "YYYY-MM-DD" in capsys.readouterr().err


# ---------------------------------------------------------------- partitioned scheduled runs


def test_run_keys_outputs_by_partition_and_a_rerun_replaces_them(model_dir, data_dir, tmp_path):
    normal = pd.read_csv(data_dir / "normal.csv")
    (tmp_path / "in").mkdir()
    normal.iloc[:120].to_csv(tmp_path / "in" / "2026-11-25.csv", index=False)
    normal.iloc[120:200].to_csv(tmp_path / "in" / "2026-11-26.csv", index=False)
    job = tmp_path / "job"

    def run(*extra: str) -> int:
        pattern = str(tmp_path / "in" / "{partition}.csv")
        args = ["run", "--input", pattern, "--output", str(job), "--model", str(model_dir)]
        return main(args + list(extra))

    assert run("--partition", "2026-11-25") == 0
    assert run("--set", "data.partition=2026-11-26") == 0  # from the config this time
    scores = job / "scores"
    assert len(pd.read_parquet(scores / "partition=2026-11-25" / "flags")) == 120
    assert len(pd.read_parquet(scores / "partition=2026-11-26" / "flags")) == 80

    normal.iloc[300:350].to_csv(tmp_path / "in" / "2026-11-26.csv", index=False)
    assert run("--partition", "2026-11-26") == 0
    rerun = pd.read_parquet(scores / "partition=2026-11-26" / "flags")
    assert set(rerun.record_id) == {str(i) for i in normal.id.iloc[300:350]}  # replaced, not added
    assert len(pd.read_parquet(scores / "partition=2026-11-25" / "flags")) == 120
    assert not list(scores.rglob(".staging-*"))


def test_partition_values_are_dates_or_safe_names():
    import datetime as dt

    today = dt.date(2026, 11, 26)
    assert resolve_partition("yesterday", today) == "2026-11-25"
    assert resolve_partition("today", today) == "2026-11-26"
    assert resolve_partition("2026-11-26") == "2026-11-26"
    assert resolve_partition(None) is None
    for bad in ("../x", "a/b", "", "day=1"):
        with pytest.raises(ValueError, match="partition"):
            resolve_partition(bad)
    assert partition_decorator("2026-11-26") == "$20261126"
    assert partition_decorator(None, today) == "$20261126"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        partition_decorator("2026-02-30")


def test_missing_partition_for_a_placeholder_names_the_fix(model_dir, tmp_path, capsys):
    args = ["run", "--input", str(tmp_path / "{partition}.csv"), "--output", str(tmp_path),
            "--model", str(model_dir)]  # fmt: skip
    assert main(args) == EXIT_BAD_INPUT
    assert "--partition" in capsys.readouterr().err


# ------------------------------------------------------------------------ BigQuery records


def _chunk_rows(chunk) -> list[tuple]:
    """(id, raw, parsed values) per record: what a chunk holds, in a comparable form."""
    rows = [json.dumps(row, default=str) for row in chunk.frame.to_dict(orient="records")]
    return list(zip(chunk.record_ids, chunk.raw, rows, strict=True))


def _chunk_sizes(chunk) -> int:
    return len(chunk)


def test_bigquery_rows_become_the_chunks_a_parquet_file_gives(data_dir, tmp_path):
    # A typed table with nulls, read as BigQuery would return it: one dict per row.
    pd.read_csv(data_dir / "mixed.csv").head(50).to_parquet(tmp_path / "t.parquet", index=False)
    table = pq.read_table(tmp_path / "t.parquet")
    config = DataConfig(id_column="id", chunk_rows=16)
    parquet_chunk, _ = parse_arrow_batch(table.to_batches()[0], 0, "bq://p.d.t", config)

    with beam.Pipeline() as pipeline:  # the DirectRunner
        read = (
            pipeline
            | beam.Create(table.to_pylist(), reshuffle=False)
            | RowsToChunks("bq://p.d.t", config)
        )
        assert_that(
            read.records | "Rows" >> beam.FlatMap(_chunk_rows),
            equal_to(_chunk_rows(parquet_chunk)),
        )
        sizes = read.records | "Sizes" >> beam.Map(_chunk_sizes)
        assert_that(sizes, equal_to([16, 16, 16, 2]), label="ChunksOfChunkRows")
        assert_that(read.dead_letter, equal_to([]), label="NoDeadLetters")


def test_bigquery_rows_without_an_id_column_get_content_ids():
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    chunk, dead = rows_to_chunk(rows, "bq://p.d.t", DataConfig(chunk_rows=8))
    again, _ = rows_to_chunk(rows[::-1], "bq://p.d.t", DataConfig(chunk_rows=8))
    assert not dead and len(set(chunk.record_ids)) == 2
    assert set(chunk.record_ids) == set(again.record_ids)  # order-free, stable across runs
    assert chunk.raw[1] == '{"a": 2, "b": null}'


def test_bigquery_tables_match_the_parquet_outputs():
    flags = bigquery_schema(postprocess.flags_schema(2, ["label"]))
    types = {f["name"]: (f["type"], f["mode"]) for f in flags["fields"]}
    assert types["score"] == ("FLOAT", "NULLABLE")
    assert types["is_anomaly"] == ("BOOLEAN", "NULLABLE")
    assert types["top_feature_2"] == types["label"] == ("STRING", "NULLABLE")
    codes = bigquery_schema(postprocess.codes_schema(4, "int8", [0.1] * 4))
    assert codes["fields"][1] == {"name": "code", "type": "INTEGER", "mode": "REPEATED"}
    table = pa.table({"score": [1.5, float("nan")], "code": [[1, -2], [3, 4]]})
    assert table_rows(table) == [{"score": 1.5, "code": [1, -2]}, {"score": None, "code": [3, 4]}]
    letter = DeadLetter("r1", "bq://p.d.t", "read", "bad", "why", "{}")
    assert table_rows(letter)[0]["reason"] == "bad"
    tables = BigQueryOutput.for_partition("bq://my-project.vaepipe", "2026-11-26")
    assert tables.table("flags").spec == "my-project:vaepipe.flags$20261126"


# ------------------------------------------------------------- multi-process DirectRunner


@pytest.mark.slow  # two worker processes each import TensorFlow and load the model
def test_scoring_on_the_multiprocess_direct_runner_matches_single_process(
    model_dir, data_dir, tmp_path
):
    """Workers in other processes unpickle every DoFn and load the bundle themselves: no
    state of the launching process (no save_main_session) may be needed."""
    normal = pd.read_csv(data_dir / "normal.csv")
    (tmp_path / "in").mkdir()
    normal.iloc[:200].to_csv(tmp_path / "in" / "a.csv", index=False)
    normal.iloc[200:400].to_csv(tmp_path / "in" / "b.csv", index=False)
    pattern = str(tmp_path / "in" / "*.csv")
    outputs = {}
    for name, extra in (
        ("single", []),
        ("multi", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]),
    ):
        out = tmp_path / name
        args = ["score", "--model", str(model_dir), "--input", pattern, "--output", str(out)]
        assert main(args + extra) == 0
        outputs[name] = out

    def load(out: Path, part: str) -> pd.DataFrame:
        return pd.read_parquet(out / part).sort_values("record_id").reset_index(drop=True)

    single, multi = (load(outputs[n], "flags") for n in ("single", "multi"))
    assert len(single) == len(multi) == 400
    pd.testing.assert_frame_equal(single, multi, check_exact=False, rtol=1e-6)
    codes = [load(outputs[n], "codes") for n in ("single", "multi")]
    assert np.array_equal(np.stack(codes[0].code), np.stack(codes[1].code))
    summaries = [json.loads((outputs[n] / "summary.json").read_text()) for n in outputs]
    assert summaries[0]["rows_read"] == summaries[1]["rows_read"] == 400
    assert summaries[0]["rows_scored"] == summaries[1]["rows_scored"] == 400


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
