"""The decompress job on the DirectRunner: a damaged block becomes a dead letter naming its
source and chunk while the others decode in order; an archive coded with a dictionary
decodes with that file only; by default the dictionary is the training rows the bundle keeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.archive import format as fmt
from pipeline.archive.blocks import UNDECODABLE_BLOCK
from pipeline.artifacts.bundle import DICTIONARY_FILE
from pipeline.core.errors import BundleError
from pipeline.jobs.compress import compress
from pipeline.jobs.decompress import decompress
from pipeline.jobs.settings import model_config


def compressed(model_dir: Path, source: Path, archive: Path, *overrides: str):
    config = model_config(str(model_dir), (), ["data.chunk_rows=100", *overrides])
    compress(str(model_dir), str(source), str(archive), config, echo=lambda _: None)
    return config


def rows_of(csv: Path, n: int, out: Path) -> Path:
    """The first `n` rows of `csv`, as text, written to `out`."""
    pd.read_csv(csv, dtype=str, keep_default_na=False).head(n).to_csv(out, index=False)
    return out


def value_bits(archive: Path) -> float:
    """Bits per record of the archive's numbers and categories (its summary)."""
    bits = json.loads((archive / fmt.SUMMARY).read_text())["bits_per_record"]
    return bits["numbers"] + bits["categories"]


def parts(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))],
                     ignore_index=True)  # fmt: skip


@pytest.mark.slow
def test_a_damaged_block_is_a_dead_letter_and_the_rest_decodes(model_dir, data_dir, tmp_path):
    source = tmp_path / "in.csv"
    pd.read_csv(data_dir / "normal.csv", dtype=str, keep_default_na=False).head(300).to_csv(
        source, index=False
    )
    archive = tmp_path / "archive"
    compressed(model_dir, source, archive, "compress.relative_tolerance=0.01")
    blocks = sorted((archive / fmt.BLOCKS).glob("*.vzb"))
    assert len(blocks) == 3
    row = fmt.read_block_file(blocks[1].read_bytes())
    header, side, words = fmt.unpack(row["payload"])
    row["payload"] = fmt.pack(header, side, words[::-1].copy())  # scrambled code
    blocks[1].write_bytes(fmt.block_file(row))
    result = decompress(str(model_dir), str(archive), str(tmp_path / "t"), echo=lambda _: None)
    assert (result.rows_in_archive, result.rows_decompressed) == (300, 200)
    assert result.rows_dead_lettered == 100 and result.blocks == 3
    dead = pd.read_parquet(tmp_path / "t" / "_dead_letter")
    assert dead["reason"].tolist() == [UNDECODABLE_BLOCK]
    assert dead["record_id"].iloc[0].endswith("#chunk1")
    out = parts(tmp_path / "t")
    original = pd.read_csv(source, dtype=str, keep_default_na=False)
    kept = pd.concat([original.iloc[:100], original.iloc[200:]], ignore_index=True)
    assert out["id"].astype(str).tolist() == kept["id"].tolist()  # the others, in order
    summary = json.loads((tmp_path / "t" / "_summary.json").read_text())
    assert summary["rows_dead_lettered"] == 100


@pytest.mark.slow
def test_a_dictionary_archive_decodes_with_that_file_only(model_dir, data_dir, tmp_path):
    source = rows_of(data_dir / "normal.csv", 200, tmp_path / "in.csv")
    dictionary = rows_of(data_dir / "train.csv", 2000, tmp_path / "dictionary.csv")
    plain, primed = tmp_path / "plain", tmp_path / "primed"
    # One latent step for both (no per-block search), so that the values' bits show what the
    # context models learnt: a searched block may trade value bits for code bits.
    fixed = ("compress.relative_tolerance=0.01", "compress.latent_search=false")
    compressed(model_dir, source, plain, *fixed, "compress.dictionary=null")
    compressed(model_dir, source, primed, *fixed, f"compress.dictionary={dictionary}")
    bits = {a: value_bits(a) for a in (plain, primed)}
    # The dictionary's rows teach the context models: the values cost fewer bits.
    assert bits[primed] < bits[plain]
    info = json.loads((primed / fmt.ARCHIVE_FILE).read_text())
    assert info["settings"]["dictionary"] == str(dictionary) and info["dictionary_sha256"]
    result = decompress(str(model_dir), str(primed), str(tmp_path / "t"), echo=lambda _: None)
    assert result.rows_decompressed == 200 and result.rows_dead_lettered == 0
    a, b = parts(tmp_path / "t"), pd.read_csv(source)
    x, y = b["load"].to_numpy(np.float64), a["load"].to_numpy(np.float64)
    seen = ~np.isnan(x)
    assert np.all(np.abs(y[seen] - x[seen]) <= 0.01 * np.abs(x[seen]))
    dictionary.write_text(dictionary.read_text().replace("\n", "\n", 1) + "\n")  # changed
    with pytest.raises(BundleError, match="another compress.dictionary"):
        decompress(str(model_dir), str(primed), str(tmp_path / "t2"), echo=lambda _: None)


@pytest.mark.slow
def test_by_default_the_bundles_training_rows_are_the_dictionary(model_dir, data_dir, tmp_path):
    source = rows_of(data_dir / "normal.csv", 200, tmp_path / "in.csv")
    plain, primed = tmp_path / "plain", tmp_path / "primed"
    compressed(model_dir, source, plain, "compress.relative_tolerance=0.01",
               "compress.dictionary=null")  # fmt: skip
    compressed(model_dir, source, primed, "compress.relative_tolerance=0.01")
    bits = {a: value_bits(a) for a in (plain, primed)}
    # The values cost fewer bits (on 100-row blocks a header's model choices may cost more).
    assert bits[primed] < bits[plain]
    info = json.loads((primed / fmt.ARCHIVE_FILE).read_text())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert info["settings"]["dictionary"] == "training"
    assert info["dictionary_sha256"] == manifest["sha256"][DICTIONARY_FILE]
    result = decompress(str(model_dir), str(primed), str(tmp_path / "t"), echo=lambda _: None)
    assert result.rows_decompressed == 200 and result.rows_dead_lettered == 0
    a, b = parts(tmp_path / "t"), pd.read_csv(source)
    assert a["region"].fillna("").tolist() == b["region"].fillna("").tolist()
