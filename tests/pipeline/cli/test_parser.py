"""pipeline.cli.parser: every subcommand parses its own flags; flags it does not know are left
for Beam's PipelineOptions (parse_known_args)."""

from __future__ import annotations

import pytest

from pipeline.cli.parser import IMAGE_VARIABLE, build_parser, flex_template_argv


def parse(argv: list[str]):
    return build_parser().parse_known_args(argv)


def test_train_flags_and_repeatable_config_and_set():
    args, beam = parse(
        ["train", "--input", "in.csv", "--output", "m", "--config", "a.yaml",
         "--config", "b.yaml", "--set", "train.epochs=3", "--set", "model.latent_dim=2"]
    )  # fmt: skip
    assert (args.command, args.input, args.output) == ("train", "in.csv", "m")
    assert args.config == ["a.yaml", "b.yaml"]
    assert args.set == ["train.epochs=3", "model.latent_dim=2"]
    assert beam == []


@pytest.mark.parametrize("command", ["score", "validate", "decode"])
def test_model_commands_parse_model_input_output(command):
    args, beam = parse([command, "--model", "m", "--input", "in", "--output", "out"])
    assert (args.command, args.model, args.input, args.output) == (command, "m", "in", "out")
    assert args.config == [] and args.set == [] and beam == []


def test_validate_output_is_optional():
    args, _ = parse(["validate", "--model", "m", "--input", "in"])
    assert args.output is None


def test_run_flags_with_both_spellings():
    args, beam = parse(
        ["run", "--input", "b.csv", "--output", "job", "--train-input", "t.csv",
         "--model", "m", "--retrain", "--partition", "2026-11-26",
         "--bigquery_output", "bq://p.d", "--no_wait"]
    )  # fmt: skip
    assert (args.input, args.output, args.train_input, args.model) == ("b.csv", "job", "t.csv", "m")
    assert args.retrain and args.no_wait
    assert args.partition == "2026-11-26" and args.bigquery_output == "bq://p.d"
    dashed, _ = parse(
        ["run", "--input", "b", "--output", "j", "--bigquery-output", "bq://p.d", "--no-wait"]
    )
    assert dashed.bigquery_output == "bq://p.d" and dashed.no_wait
    assert not dashed.retrain and dashed.model is None and dashed.partition is None


def test_demo_defaults_and_flags():
    args, _ = parse(["demo"])
    assert (args.output, args.kind, args.rows) == ("vaepipe_output", "tabular", None)
    args, _ = parse(["demo", "--kind", "image", "--rows", "200", "--output", "d"])
    assert (args.output, args.kind, args.rows) == ("d", "image", 200)


def test_unknown_flags_go_to_beam_in_order():
    args, beam = parse(
        ["score", "--runner", "DirectRunner", "--model", "m", "--input", "i", "--output", "o",
         "--direct_num_workers=2", "--project", "p"]
    )  # fmt: skip
    assert args.model == "m"
    assert beam == ["--runner", "DirectRunner", "--direct_num_workers=2", "--project", "p"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["train", "--input", "x"], "the following arguments are required: --output"),
        (["score", "--input", "x", "--output", "o"], "required: --model"),
        (["demo", "--kind", "video"], "invalid choice: 'video'"),
        (["demo", "--rows", "many"], "invalid int value: 'many'"),
        (["fit"], "invalid choice: 'fit'"),
    ],
)
def test_bad_command_lines_exit_2_naming_the_problem(argv, message, capsys):
    with pytest.raises(SystemExit) as caught:
        parse(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_flex_template_argv_runs_without_waiting_on_the_images_own_container():
    argv = ["--input", "bq://p.d.t", "--output", "gs://b/j"]
    assert flex_template_argv(argv, {IMAGE_VARIABLE: "gcr.io/p/vaepipe:1"}) == [
        "run", "--no-wait", *argv, "--sdk_container_image=gcr.io/p/vaepipe:1",
    ]  # fmt: skip
    assert flex_template_argv(argv, {}) == ["run", "--no-wait", *argv]
    named = [*argv, "--sdk_container_image=other:2"]
    assert flex_template_argv(named, {IMAGE_VARIABLE: "mine:1"}) == ["run", "--no-wait", *named]
    args, beam = parse(flex_template_argv(argv, {IMAGE_VARIABLE: "img"}))
    assert args.command == "run" and args.no_wait and beam == ["--sdk_container_image=img"]
