"""Fuzzing the image scoring job with bad files: nothing crashes and no file is lost.

A seeded generator writes a folder (with a subfolder) of a few hundred files and decides each
file's fate as it writes it: scored (grey PNG, JPEG, BMP, GIF, TIFF, lossless WebP, bilevel,
grey-valued RGB, an upper-case extension, bytes after the PNG end) or dead-lettered with a
given reason code (zero bytes; text, random bytes or a CSV named .png; PNG/JPEG/BMP cut short;
damaged PNG data; RGBA, LA, CMYK, 16-bit, 32-bit, float, transparent-palette or colour
images for a grey model; the wrong size; a decompression bomb; an extension not read). The
real `vaepipe score` runs once on the folder (small chunks and model batches) and every
file's fate is checked: good images scored exactly once, bad files dead-lettered exactly once
with their reason and a message naming the file, files read = scored + dead-lettered.

Figures (seed 20261126): 320 files, 150 good images scored, 170 bad files dead-lettered
(corrupt_image 8, empty_file 10, not_an_image 28, too_many_pixels 4, truncated_image 40,
unsupported_extension 16, wrong_mode 44, wrong_size 20); records lost: 0.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.cli.demo_images import rings, strokes
from pipeline.core.records import (
    CORRUPT_IMAGE,
    EMPTY_FILE,
    NOT_AN_IMAGE,
    TOO_MANY_PIXELS,
    TRUNCATED_IMAGE,
    UNSUPPORTED_EXTENSION,
    WRONG_MODE,
    WRONG_SIZE,
)

SEED = 20261126
SCORED = "scored"
# Small chunks and model batches: many chunks, ragged last batches. The pixel limit makes a
# 3000 x 3000 PNG (9 KB on disk) a decompression bomb without using much memory.
SCORE_SETTINGS = [
    "--set", "data.chunk_rows=16",
    "--set", "scoring.batch_size=8",
    "--set", "image.max_pixels=1000000",
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A kind of file: how to make it (rng -> bytes), its extension and its fate."""

    name: str
    make: Callable[[np.random.Generator], bytes]
    extension: str
    fate: str
    count: int


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _digit(rng: np.random.Generator) -> np.ndarray:
    """A 28 x 28 grey image of the kind the model was trained on (or sometimes a ring)."""
    seed = int(rng.integers(1 << 30))
    return (strokes if rng.random() < 0.8 else rings)(1, seed)[0]


def _grey(fmt: str, **options) -> Callable[[np.random.Generator], bytes]:
    return lambda rng: _save(Image.fromarray(_digit(rng)), fmt, **options)


def _as(mode: str, fmt: str, **options) -> Callable[[np.random.Generator], bytes]:
    return lambda rng: _save(Image.fromarray(_digit(rng)).convert(mode), fmt, **options)


def _cut(fmt: str, low: float, high: float) -> Callable[[np.random.Generator], bytes]:
    def make(rng):
        data = _grey(fmt)(rng)
        return data[: int(len(data) * rng.uniform(low, high))]

    return make


def _damaged_png(rng):
    data = bytearray(_grey("PNG")(rng))
    data[int(rng.integers(45, 60))] ^= 0xFF  # inside the compressed pixel data (IDAT)
    return bytes(data)


def _colour(fmt: str) -> Callable[[np.random.Generator], bytes]:
    def make(rng):
        grey = _digit(rng)
        return _save(Image.fromarray(np.stack([grey, grey // 2, 255 - grey], -1)), fmt)

    return make


def _sized(height: int, width: int) -> Callable[[np.random.Generator], bytes]:
    return lambda rng: _save(Image.fromarray(np.resize(_digit(rng), (height, width))), "PNG")


def _uint16(rng):
    return _save(Image.fromarray(_digit(rng).astype(np.uint16) * 257), "PNG")  # mode I;16


def _text(rng):
    return ("this is not an image\n" * int(rng.integers(1, 40))).encode()


def _csv(rng):
    rows = rng.integers(0, 255, (int(rng.integers(5, 50)), 4))
    return ("a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in rows)).encode()


def _html(rng):
    return b"<!DOCTYPE html><html><body><img src='x.png'></body></html>"


_bomb = _save(Image.new("L", (3000, 3000)), "PNG")  # 9 M pixels in 9 KB

GOOD = [
    Case("png", _grey("PNG"), ".png", SCORED, 60),
    Case("jpeg", _grey("JPEG", quality=92), ".jpg", SCORED, 20),
    Case("bmp", _grey("BMP"), ".bmp", SCORED, 10),
    Case("gif", _grey("GIF"), ".gif", SCORED, 10),  # a grey palette (mode P)
    Case("tiff", _grey("TIFF"), ".tiff", SCORED, 10),
    Case("webp", _grey("WEBP", lossless=True), ".webp", SCORED, 10),  # decodes as grey RGB
    Case("bilevel", _as("1", "PNG"), ".png", SCORED, 10),
    Case("grey_rgb", _as("RGB", "PNG"), ".png", SCORED, 10),
    Case("upper_case", _grey("PNG"), ".PNG", SCORED, 5),
    Case("trailing_bytes", lambda rng: _grey("PNG")(rng) + rng.bytes(100), ".png", SCORED, 5),
]
BAD = [
    Case("empty_png", lambda rng: b"", ".png", EMPTY_FILE, 6),
    Case("empty_jpg", lambda rng: b"", ".jpg", EMPTY_FILE, 4),
    Case("text", _text, ".png", NOT_AN_IMAGE, 8),
    Case(
        "random_bytes", lambda rng: rng.bytes(int(rng.integers(1, 5000))), ".jpg", NOT_AN_IMAGE, 8
    ),
    Case("csv_named_png", _csv, ".png", NOT_AN_IMAGE, 8),
    Case("html", _html, ".jpg", NOT_AN_IMAGE, 4),
    Case("cut_png", _cut("PNG", 0.2, 0.8), ".png", TRUNCATED_IMAGE, 12),
    Case("png_header_only", lambda rng: _grey("PNG")(rng)[:20], ".png", TRUNCATED_IMAGE, 4),
    Case("cut_jpeg", _cut("JPEG", 0.1, 0.95), ".jpg", TRUNCATED_IMAGE, 16),
    Case("cut_bmp", _cut("BMP", 0.1, 0.9), ".bmp", TRUNCATED_IMAGE, 8),
    Case("damaged_png", _damaged_png, ".png", CORRUPT_IMAGE, 8),
    Case("rgba", _as("RGBA", "PNG"), ".png", WRONG_MODE, 6),
    Case("la", _as("LA", "PNG"), ".png", WRONG_MODE, 4),
    Case("cmyk_jpeg", _as("CMYK", "JPEG"), ".jpg", WRONG_MODE, 4),
    Case("cmyk_tiff", _as("CMYK", "TIFF"), ".tif", WRONG_MODE, 3),
    Case("uint16", _uint16, ".png", WRONG_MODE, 5),
    Case("int32", _as("I", "TIFF"), ".tif", WRONG_MODE, 3),
    Case("float", _as("F", "TIFF"), ".tif", WRONG_MODE, 3),
    Case("transparent_palette", _as("P", "PNG", transparency=0), ".png", WRONG_MODE, 4),
    Case("colour_png", _colour("PNG"), ".png", WRONG_MODE, 8),
    Case("colour_jpeg", _colour("JPEG"), ".jpg", WRONG_MODE, 4),
    Case("too_big", _sized(32, 32), ".png", WRONG_SIZE, 10),
    Case("one_row_short", _sized(27, 28), ".png", WRONG_SIZE, 10),
    Case(
        "bomb", lambda rng: _save(Image.new("L", (3000, 3000)), "PNG"), ".png", TOO_MANY_PIXELS, 4
    ),
    Case("txt", _text, ".txt", UNSUPPORTED_EXTENSION, 5),
    Case("csv", _csv, ".csv", UNSUPPORTED_EXTENSION, 5),
    Case("no_extension", _grey("PNG"), "", UNSUPPORTED_EXTENSION, 3),
    Case("backup", _grey("PNG"), ".png.bak", UNSUPPORTED_EXTENSION, 3),
]


@dataclass(frozen=True)
class File:
    path: str
    case: str
    fate: str
    size: int


def write_files(folder: Path) -> list[File]:
    """Every case's files, in a seeded order, a third of them in a subfolder."""
    rng = np.random.default_rng(SEED)
    plan = [case for case in GOOD + BAD for _ in range(case.count)]
    files = []
    for number, index in enumerate(rng.permutation(len(plan))):
        case = plan[index]
        where = folder / "more" if rng.random() < 0.33 else folder
        where.mkdir(exist_ok=True)
        path = where / f"{case.name}-{number:04d}{case.extension}"
        data = case.make(rng)
        path.write_bytes(data)
        files.append(File(str(path), case.name, case.fate, len(data)))
    return files


@dataclass
class FuzzRun:
    files: list[File]
    flags: pd.DataFrame
    codes: pd.DataFrame
    dead: pd.DataFrame
    summary: dict
    exit_code: int


@pytest.fixture(scope="module")
def fuzz_run(image_model_dir, tmp_path_factory) -> FuzzRun:
    folder = tmp_path_factory.mktemp("image_fuzz_in")
    files = write_files(folder)
    out = tmp_path_factory.mktemp("image_fuzz_out") / "scores"
    code = main(["score", "--model", str(image_model_dir), "--input", str(folder),
                 "--output", str(out)] + SCORE_SETTINGS)  # fmt: skip
    read = (lambda name: pd.read_parquet(out / name)) if code == 0 else (lambda _: pd.DataFrame())
    return FuzzRun(
        files=files,
        flags=read("flags"),
        codes=read("codes"),
        dead=read("dead_letter"),
        summary=json.loads((out / "summary.json").read_text()) if code == 0 else {},
        exit_code=code,
    )


def test_the_job_succeeds_and_accounts_for_every_file(fuzz_run, capsys):
    assert fuzz_run.exit_code == 0
    files = fuzz_run.files
    good = sum(f.fate == SCORED for f in files)
    bad = len(files) - good
    s = fuzz_run.summary
    assert s["rows_read"] == len(files) == s["rows_scored"] + s["rows_dead_lettered"]
    assert (s["rows_scored"], s["rows_dead_lettered"]) == (good, bad)
    lost = len(files) - len(fuzz_run.flags) - len(fuzz_run.dead)
    assert lost == 0
    reasons = Counter(fuzz_run.dead["reason"])
    assert set(reasons) == {case.fate for case in BAD}
    with capsys.disabled():
        print(
            f"\nimage fuzz: {len(files)} files, {good} good images scored, {bad} bad files "
            f"dead-lettered ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))}), "
            f"records lost: {lost}"
        )


def test_every_good_image_is_scored_exactly_once(fuzz_run):
    expected = {f.path for f in fuzz_run.files if f.fate == SCORED}
    for table in (fuzz_run.flags, fuzz_run.codes):
        ids = table["record_id"].tolist()
        assert len(ids) == len(set(ids)), "an image was scored twice"
        assert set(ids) == expected
    flags = fuzz_run.flags
    for column in ("score", "reconstruction_nll", "kl", "p_value"):
        assert np.isfinite(flags[column]).all(), column
    assert flags["top_feature_1"].str.fullmatch(r"y\d+:\d+ x\d+:\d+").all()


def test_every_bad_file_is_dead_lettered_once_with_its_reason(fuzz_run):
    dead = fuzz_run.dead
    assert not dead["record_id"].duplicated().any(), "a file was dead-lettered twice"
    letters = dead.set_index("record_id")
    bad = [f for f in fuzz_run.files if f.fate != SCORED]
    assert set(letters.index) == {f.path for f in bad}
    wrong = []
    for file in bad:
        letter = letters.loc[file.path]
        raw = json.loads(letter["raw"])
        if letter["reason"] != file.fate:
            wrong.append((file.case, file.fate, letter["reason"], letter["message"][-120:]))
        elif not letter["message"].startswith(file.path + ": "):
            wrong.append((file.case, "message does not name the file", letter["message"]))
        elif (raw["path"], raw["bytes"], letter["source"]) != (file.path, file.size, file.path):
            wrong.append((file.case, "raw or source differs", letter["raw"]))
    assert wrong == []
    assert (dead["stage"] == "read").all()


def test_dead_letters_carry_what_was_known_and_never_the_content(fuzz_run):
    letters = fuzz_run.dead.set_index("record_id")
    by_case = {f.case: f for f in fuzz_run.files}
    rgba = json.loads(letters.loc[by_case["rgba"].path, "raw"])
    assert (rgba["format"], rgba["mode"], rgba["size"]) == ("PNG", "RGBA", [28, 28])
    bomb = json.loads(letters.loc[by_case["bomb"].path, "raw"])
    assert bomb["size"] == [3000, 3000]
    assert letters["raw"].str.len().max() < 300  # a summary, not the file
    assert "image.resize" in letters.loc[by_case["too_big"].path, "message"]


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
