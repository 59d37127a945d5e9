"""`vaepipe sample`: records drawn from the prior and decoded, against the training data."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.artifacts.bundle import load_bundle
from pipeline.cli.report_commands import add_report_parsers, cmd_sample
from pipeline.jobs.sample import sample

pytestmark = pytest.mark.slow


def _quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def drawn(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    sample(str(model_dir), 4000, str(out), seed=1, echo=_quiet)
    return pd.read_parquet(out)


def test_samples_have_the_training_schema(drawn, model_dir):
    encoding = load_bundle(str(model_dir), load_model=False).encoding
    assert list(drawn.columns) == ["record_id", *encoding.columns]
    assert len(drawn) == 4000 and drawn["record_id"].is_unique


def test_numeric_marginals_match_the_training_data(drawn, data_dir, model_dir):
    train = pd.read_csv(data_dir / "train.csv")
    encoding = load_bundle(str(model_dir), load_model=False).encoding
    for spec in encoding.numeric:
        real, fake = train[spec.name].dropna(), drawn[spec.name].dropna()
        assert abs(fake.mean() - real.mean()) < 0.2 * real.std(), spec.name
        assert 0.6 < fake.std() / real.std() < 1.4, spec.name


def test_category_frequencies_match_the_training_data(drawn, data_dir, model_dir):
    train = pd.read_csv(data_dir / "train.csv", dtype=str)
    encoding = load_bundle(str(model_dir), load_model=False).encoding
    for spec in encoding.categorical:
        real = train[spec.name].dropna().value_counts(normalize=True)
        fake = drawn[spec.name].dropna().astype(str).str.replace(r"\.0$", "", regex=True)
        fake = fake.value_counts(normalize=True)
        values = real.index.union(fake.index)
        distance = 0.5 * np.abs(real.reindex(values, fill_value=0) -
                                fake.reindex(values, fill_value=0)).sum()  # fmt: skip
        assert distance < 0.1, (spec.name, distance)


def test_the_seed_fixes_the_draws(model_dir, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        sample(str(model_dir), 50, str(tmp_path / name), seed=seed, echo=_quiet)
    a, b, c = (pd.read_parquet(tmp_path / n) for n in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_most_likely_records_are_less_spread(model_dir, tmp_path, drawn):
    sample(str(model_dir), 2000, str(tmp_path), seed=1, likely=True, echo=_quiet)
    likely = pd.read_parquet(tmp_path)
    assert likely["temperature"].std() < drawn["temperature"].std()


def test_image_samples_are_png_files(image_model_dir, tmp_path):
    result = sample(str(image_model_dir), 5, str(tmp_path), echo=_quiet)
    index = pd.read_parquet(tmp_path / "index")
    assert result.rows == 5 and len(index) == 5
    for path in index["image"]:
        with Image.open(path) as image:
            assert image.size == (28, 28) and image.mode == "L"


def test_the_command_line(model_dir, tmp_path):
    parser = argparse.ArgumentParser()
    add_report_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sample", "--model", str(model_dir), "--rows", "7",
                              "--output", str(tmp_path), "--seed", "2"])  # fmt: skip
    assert cmd_sample(args, []) == 0
    assert len(pd.read_parquet(tmp_path)) == 7


@pytest.mark.parametrize("rows", [0, -3])
def test_rows_must_be_positive(model_dir, tmp_path, rows):
    with pytest.raises(ValueError, match="--rows must be a positive number of records"):
        sample(str(model_dir), rows, str(tmp_path))
