"""Blocks round-trip under the model: the bound holds for fuzzed records at every tolerance,
tolerance 0 is bit-exact, and the code is cheap where the model is sure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs.schema import CompressConfig
from pipeline.archive import coder as coder_module
from pipeline.archive import format as fmt
from pipeline.archive.blocks import Archiver
from pipeline.archive.coder import BlockCoder, header_bytes, header_from_bytes
from pipeline.archive.verify import BoundViolation, violations
from pipeline.core.records import RecordChunk

SETTINGS = [
    CompressConfig(),
    CompressConfig(relative_tolerance=1e-3),
    CompressConfig(relative_tolerance=1e-2),
    CompressConfig(relative_tolerance=0.1),
    CompressConfig(absolute_tolerance=0.5, relative_tolerance=0.01),
    CompressConfig(
        relative_tolerance=0.01,
        column_tolerances={
            "amount": {"absolute_tolerance": 5.0},
            "rate": {"relative_tolerance": 0},
        },
    ),
]


def chunk(frame: pd.DataFrame, source: str = "t.csv") -> RecordChunk:
    ids = [f"{source}:{i + 2}" for i in range(len(frame))]
    return RecordChunk(source, ids, [""] * len(frame), frame)


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: f"a{s.absolute_tolerance}-r{s.relative_tolerance}"
)
@pytest.mark.parametrize("seed", [3, 4])
def test_fuzzed_blocks_decode_within_the_bound(tiny_model, encoding, frame_of, settings, seed):
    frame = frame_of(700, seed)
    coder = BlockCoder(tiny_model, encoding, settings)
    block = coder.encode(frame)
    decoded = coder.decode(header_from_bytes(header_bytes(block.header)), block.words)
    ids = [str(i) for i in range(len(frame))]
    assert violations(frame, decoded, encoding, settings, ids) == []
    assert decoded["city"].tolist() == frame["city"].tolist()  # unseen ones too
    assert np.array_equal(np.isnan(decoded["wild"]), np.isnan(frame["wild"]))


def test_tolerance_zero_is_bit_exact(tiny_model, encoding, frame_of):
    frame = frame_of(500, 5)
    coder = BlockCoder(tiny_model, encoding, CompressConfig())
    block = coder.encode(frame)
    decoded = coder.decode(block.header, block.words)
    for spec in encoding.numeric:
        assert np.array_equal(
            decoded[spec.name].to_numpy().view(np.int64), frame[spec.name].to_numpy().view(np.int64)
        ), spec.name  # -0.0, 5e-324, 1.7e308 and NaN's bits included


def test_a_value_the_model_is_sure_of_costs_almost_nothing(tiny_model, encoding, frame_of):
    frame = frame_of(2000, 6)
    coder = BlockCoder(tiny_model, encoding, CompressConfig(relative_tolerance=0.01))
    plain = coder.encode(frame).bits.numbers
    frame["rate"] = 1.0  # one exact value: a spike the block learns
    frame["count"] = frame["count"].where(frame["count"].isna(), 0.0)
    constant = coder.encode(frame).bits.numbers
    # two of four columns became constant: their bits all but vanish
    assert constant < plain - 0.9 * (plain - constant) and (plain - constant) / len(frame) > 3


def test_widening_the_bound_lowers_the_bits(tiny_model, encoding, frame_of):
    frame = frame_of(1500, 7)
    sizes = [
        BlockCoder(tiny_model, encoding, CompressConfig(relative_tolerance=r)).encode(frame)
        for r in (0.0, 1e-3, 1e-2, 1e-1)
    ]
    bits = [len(b.words) for b in sizes]
    assert bits == sorted(bits, reverse=True) and bits[-1] < 0.6 * bits[0]


def test_unused_latent_dimensions_are_not_coded(tiny_model, encoding, frame_of, monkeypatch):
    monkeypatch.setattr(coder_module, "UNUSED_DIMENSION", 0.0)  # every dimension "unused"
    coder = BlockCoder(tiny_model, encoding, CompressConfig())
    block = coder.encode(frame_of(300, 8))
    assert block.header["latent_step"] == [None] * 3 and block.bits.code == 0
    decoded = coder.decode(block.header, block.words)
    assert decoded["city"].tolist() == frame_of(300, 8)["city"].tolist()


def test_the_latent_search_tries_coarser_steps_and_no_code():
    assert coder_module.latent_scales(CompressConfig(latent_search=False)) == ((8.0,), ())
    coarser, finer = coder_module.latent_scales(CompressConfig(latent_step=3))
    assert coarser == (3.0, 6.0, 12.0, None) and finer == (1.5, 0.75)


@pytest.mark.parametrize("tolerance", [0.0, 0.01])
def test_the_searched_step_is_never_larger_and_decodes_alike(
    tiny_model, encoding, frame_of, tolerance
):
    frame = frame_of(1200, 9)
    fixed = CompressConfig(relative_tolerance=tolerance, latent_search=False)
    searched = CompressConfig(relative_tolerance=tolerance)
    one = BlockCoder(tiny_model, encoding, fixed).encode(frame)
    coder = BlockCoder(tiny_model, encoding, searched)
    best = coder.encode(frame)
    assert 32 * len(best.words) + 8 * len(header_bytes(best.header)) <= (
        32 * len(one.words) + 8 * len(header_bytes(one.header))
    )
    decoded = coder.decode(header_from_bytes(header_bytes(best.header)), best.words)
    ids = [str(i) for i in range(len(frame))]
    assert violations(frame, decoded, encoding, searched, ids) == []
    # The steps travel in the header: a coder set to another step decodes the block too.
    other = BlockCoder(tiny_model, encoding, CompressConfig(latent_step=1.0, latent_search=False))
    assert other.decode(best.header, best.words).equals(decoded)


def test_the_dictionarys_states_are_kept_within_their_budget(
    tiny_model, encoding, frame_of, monkeypatch
):
    settings = CompressConfig(relative_tolerance=0.01)
    frame, dictionary = frame_of(600, 10), frame_of(1500, 11)
    roomy = BlockCoder(tiny_model, encoding, settings, dictionary)
    block = roomy.encode(frame)
    assert 2 <= len(roomy._dictionary._states) <= coder_module.MAX_STEP_LISTS
    monkeypatch.setattr(coder_module, "MAX_STATE_BYTES", 1)  # room for the one in use only
    tight = BlockCoder(tiny_model, encoding, settings, dictionary)
    again = tight.encode(frame)
    assert len(tight._dictionary._states) == 1
    assert again.header == block.header and np.array_equal(again.words, block.words)
    assert tight.decode(again.header, again.words).equals(roomy.decode(block.header, block.words))


def test_archiver_checks_its_own_output(tiny_model, encoding, frame_of, monkeypatch):
    """A coder that decodes one value wrongly makes compress fail, naming record and column."""
    archiver = Archiver(tiny_model, encoding, CompressConfig(relative_tolerance=0.01))
    for name in ("_decode_numbers", "_decode_mixture"):  # both codes of a number
        real = getattr(coder_module, name)
        monkeypatch.setattr(coder_module, name, lambda *a, real=real: real(*a) * 1.02)
    with pytest.raises(BoundViolation, match=r"record 't.csv:\d+', column 'amount'"):
        archiver.compress_chunk(chunk(frame_of(300, 9)), 0)


def test_a_block_decodes_with_ids_and_excluded_columns(tiny_model, encoding, frame_of):
    frame = frame_of(400, 10)
    frame["note"] = pd.Series(["x", None, "ü"] * 133 + ["z"], dtype=object)
    typed = chunk(frame)
    typed.record_ids = [f"id-{i}" for i in range(len(frame))]
    archiver = Archiver(
        tiny_model, encoding, CompressConfig(relative_tolerance=0.01), "id", ("note",)
    )
    result = archiver.compress_chunk(typed, 3)
    info = {"columns": ["id", "city", "note", "amount"], "integer_columns": ["count"]}
    table = archiver.decompress_row(result.row, info)
    assert table.column_names[:4] == ["id", "city", "note", "amount"]
    assert table.column("id").to_pylist() == typed.record_ids
    assert table.column("note").to_pylist() == frame["note"].tolist()
    assert str(table.schema.field("count").type) == "int64"
    assert str(table.schema.field("level").type) == "int64"
    assert table.column("level").to_pylist() == [
        None if v is None else int(v) for v in frame["level"]
    ]
    assert result.row["rows"] == 400 and result.row["chunk"] == 3
    assert set(result.non_integer) == {"amount", "rate", "wild"}


def test_a_block_that_decodes_to_other_values_is_caught_by_its_checksum(
    tiny_model, encoding, frame_of
):
    archiver = Archiver(tiny_model, encoding, CompressConfig(relative_tolerance=0.01))
    row = archiver.compress_chunk(chunk(frame_of(300, 11)), 0).row
    header, side, words = fmt.unpack(row["payload"])
    data = header_from_bytes(header)
    data["crc"] ^= 1  # as if this machine's decoder had computed other values
    with pytest.raises(ValueError, match="checksum mismatch"):
        archiver.decompress_payload(fmt.pack(header_bytes(data), side, words))


@pytest.mark.parametrize("damage", ["grid", "words", "truncate", "magic"])
def test_a_damaged_block_is_refused_with_a_value_error(tiny_model, encoding, frame_of, damage):
    archiver = Archiver(tiny_model, encoding, CompressConfig(relative_tolerance=0.01))
    payload = archiver.compress_chunk(chunk(frame_of(300, 11)), 0).row["payload"]
    header, side, words = fmt.unpack(payload)
    if damage == "grid":
        data = header_from_bytes(header)
        entry = data["grids"][0]
        (entry["mix"] or entry)["widening"] += 3  # the widening its code used
        payload = fmt.pack(header_bytes(data), side, words)
    elif damage == "words":
        payload = fmt.pack(header, side, words[::-1].copy())
    elif damage == "truncate":
        payload = payload[: len(payload) // 2 + 1]
    else:
        payload = b"XXXX" + payload[4:]
    with pytest.raises(ValueError):
        archiver.decompress_payload(payload)


def test_a_non_integer_in_an_integer_category_is_a_dead_letter(tiny_model, encoding, frame_of):
    frame = frame_of(50, 12)
    frame.loc[7, "level"] = "2.5"
    frame.loc[9, "level"] = "two"
    archiver = Archiver(tiny_model, encoding, CompressConfig())
    result = archiver.compress_chunk(chunk(frame), 0)
    assert result.row["rows"] == 48
    assert [(d.record_id, d.reason, d.field) for d in result.dead] == [
        ("t.csv:9", "not_an_integer", "level"),
        ("t.csv:11", "not_an_integer", "level"),
    ]


def test_a_coder_keeping_the_dictionarys_counts_decodes_as_a_fresh_one(
    tiny_model, encoding, frame_of
):
    """The dictionary's codes, decoder outputs and grid values are kept between blocks
    (`_Dictionary.memo`): blocks decoded by the coder that made them, in any order, equal
    the blocks a fresh coder decodes (which counts the dictionary anew)."""
    settings = CompressConfig(relative_tolerance=0.01)
    dictionary = frame_of(600, 20)
    coder = BlockCoder(tiny_model, encoding, settings, dictionary)
    blocks = [coder.encode(frame_of(300, seed)) for seed in (21, 22)]
    kept = [coder.decode(b.header, b.words) for b in blocks[::-1]]
    for block, decoded in zip(blocks[::-1], kept, strict=True):
        fresh = BlockCoder(tiny_model, encoding, settings, dictionary)
        pd.testing.assert_frame_equal(decoded, fresh.decode(block.header, block.words))
    assert kept[1]["city"].tolist() == frame_of(300, 21)["city"].tolist()
    assert coder._dictionary._memo  # something was kept
