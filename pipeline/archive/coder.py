"""One block of records <-> bytes, entropy-coded under the model with constriction's range coder.

The symbols of a block, in the order both sides code them:

1. The code: the posterior mean, quantized per dimension with step `latent_step` x the
   block's median posterior standard deviation of that dimension, under the prior N(0, 1)
   (QuantizedGaussian). A dimension whose posterior is as wide as the prior (unused by the
   model) is not coded: it decodes to 0. The decoder (`network.DecoderNet`) then turns the
   dequantized code into every column's distribution.
2. Missing masks: one Bernoulli per row for each column with some but not all values missing,
   at the block's missing rate (stored in the header).
3. Numbers, column by column. A value's bin index k on the column's tolerance grid
   (`quantize.Grid`) is coded as the residual d = k - round(m) under a Gaussian: m is the
   decoder's mean mapped onto the grid's continuous index (original units: center + scale *
   sinh(u), then `Grid.coordinate`), its width the secant of the +-1 sigma points mapped the
   same way. This is the decoder's Gaussian pushed forward through the inverse asinh and the
   grid, linearised per record: exact where the grid is uniform and asinh near linear, and
   near exact in asinh's logarithmic range, which a relative grid's geometric zone matches.
   The linearisation only costs bits, never correctness: any distribution the decoder can
   rebuild is a valid code. Two corrections for what the decoder misses, fitted by the
   encoder per column and block: spikes (the block's most frequent exact values, coded first
   as "which spike, or none", adaptively, in the context of the spike the decoder's mean is
   nearest and how near: the decoder's floored variance cannot give an exact 0 or 1.00 the
   probability it has) and a widening (the power of 2 by which the decoder's spreads are
   scaled, the one that codes the column's other values in the fewest bits). A wide
   Gaussian is split: the residual's high part under the Gaussian, its low `b` bits uniform.
   Escapes: a residual beyond 32 standard deviations (FAR: its sign and bit length, then its
   bits) and a value the grid cannot hit within its bound (RAW: the 64 bits of the float64).
   The grid: `quantize.Grid` (generic floats) or `quantize.UnitGrid` (integers and short
   decimals, in units of their last digit).
4. Categories, column by column, under the decoder's softmax (a confident right guess costs
   almost nothing); a value outside the vocabulary is the OOV class, then its index in the
   block's list of unseen values (kept as text in the header).

The header (zlib'd JSON) holds the block's grids, missing counts, latent steps, unseen values
and a CRC32 of the values the block decodes to.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field

import constriction
import numpy as np
import pandas as pd

from pipeline.archive.network import DecoderNet, DecoderOutputs
from pipeline.archive.quantize import MAX_INDEX, choose_grid, grid_from_dict
from pipeline.archive.settings import CompressSettings

_model = constriction.stream.model
_queue = constriction.stream.queue

WINDOW = 2048  # residual symbols -WINDOW..WINDOW; +-(WINDOW + 1) are the escapes
FAR = WINDOW + 1
RAW = -(WINDOW + 1)
SPREAD_TARGET = 64.0  # a residual wider than this (in bins) gives up low bits to a uniform code
MIN_SPREAD = 0.05  # bins: a decoder sure of a bin still leaves the others codeable
MAX_SPREAD = 2.0**60
PIECE_BITS = 16  # raw bits travel in uniform symbols of at most this many bits
UNUSED_DIMENSION = 0.75  # a posterior std at least this (prior 1) marks an unused dimension
PRIOR_RANGE = 8.0  # latent symbols cover +-8 prior standard deviations
MIN_LATENT_STEP = 2.0**-12
MAX_SPIKES = 6
SPIKE_SHARE = 0.02
SPIKE_BUCKETS = (0.5, 1.5, 3.0, 6.0)  # distance from the decoder's mean, in its spreads
SPIKE_BATCH = 256
SPIKE_PRIOR = 0.5
WIDENINGS = (-6, -5, -4, -3, -2, -1, 0, 1, 2)
_QG_FAMILY = _model.QuantizedGaussian(-FAR, FAR)


@dataclass
class Bits:
    """Where a block's bits went (range-coder output; the header and side data apart)."""

    code: int = 0
    masks: int = 0
    numbers: int = 0
    categories: int = 0
    header: int = 0

    def add(self, other: Bits) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class CodedBlock:
    header: dict
    words: np.ndarray
    bits: Bits = field(default_factory=Bits)


class BlockCoder:
    """Codes the modelled columns of a typed frame under one bundle's model and encoding."""

    def __init__(self, model, encoding, settings: CompressSettings) -> None:
        self._model = model
        self._net = DecoderNet(model)
        self._encoding = encoding
        self._settings = settings
        cards = [spec.cardinality for spec in encoding.categorical]
        self._offsets = np.concatenate([[0], np.cumsum(cards)]).astype(int)

    # ---------------------------------------------------------------- encoding
    def encode(self, frame: pd.DataFrame) -> CodedBlock:
        n = len(frame)
        encoder = _queue.RangeEncoder()
        bits = Bits()
        header: dict = {"n": n}
        z = self._encode_latent(frame, encoder, header)
        bits.code = encoder.num_bits()
        outputs = self._net(z)
        missing = self._missing(frame)
        header["missing"] = [int(m.sum()) for m in missing]
        for mask in missing:
            _encode_mask(encoder, mask)
        bits.masks = encoder.num_bits() - bits.code
        header["grids"] = [
            self._encode_numeric_column(encoder, frame, j, outputs, ~missing[j])
            for j in range(len(self._encoding.numeric))
        ]
        bits.numbers = encoder.num_bits() - bits.code - bits.masks
        header["literals"] = [
            self._encode_categories(encoder, frame, j, outputs, missing)
            for j in range(len(self._encoding.categorical))
        ]
        bits.categories = encoder.num_bits() - bits.code - bits.masks - bits.numbers
        return CodedBlock(header, encoder.get_compressed(), bits)

    def _encode_numeric_column(self, encoder, frame, j: int, outputs, present) -> dict:
        """Code one numeric column's present values; returns its header entry (the grid, the
        spikes and the widening the decoder needs)."""
        spec = self._encoding.numeric[j]
        x = frame[spec.name].to_numpy(dtype=np.float64)[present]
        tolerance = self._settings.tolerance(spec.name)
        grid = choose_grid(x, tolerance)
        model = _numeric_model(outputs, j, present, spec, grid)
        spikes, widening = [], 0
        if model is not None and len(x):
            k, ok = grid.representable(x, tolerance)
            spikes = choose_spikes(k, ok)
            rest = _spike_symbols(k, ok, spikes) == 0
            widening = choose_widening(_take(model, rest), k[rest], ok[rest])
        _encode_numbers(encoder, x, grid, tolerance, model, spikes, widening)
        return {**grid.to_dict(), "spikes": spikes, "widening": widening}

    def _encode_latent(self, frame: pd.DataFrame, encoder, header: dict) -> np.ndarray:
        packed = self._encoding.encode(frame)
        z_mean, z_log_var = self._model.encode(packed)
        z_mean = np.asarray(z_mean, dtype=np.float64)
        spread = np.median(np.exp(0.5 * np.asarray(z_log_var, dtype=np.float64)), axis=0)
        steps = [
            None if s >= UNUSED_DIMENSION else _snap_step(self._settings.latent_step * s)
            for s in spread
        ]
        header["latent_step"] = steps
        z = np.zeros_like(z_mean)
        for i, step in enumerate(steps):
            if step is None:
                continue
            top = _latent_top(step)
            symbols = np.clip(np.rint(z_mean[:, i] / step), -top, top).astype(np.int32)
            encoder.encode(symbols, _model.QuantizedGaussian(-top, top, 0.0, 1.0 / step))
            z[:, i] = symbols * step
        return z

    def _missing(self, frame: pd.DataFrame) -> list[np.ndarray]:
        masks = [frame[s.name].isna().to_numpy() for s in self._encoding.numeric]
        masks += [frame[s.name].isna().to_numpy() for s in self._encoding.categorical]
        return masks

    def _encode_categories(self, encoder, frame, j, outputs, missing) -> list[str]:
        spec = self._encoding.categorical[j]
        present = ~missing[len(self._encoding.numeric) + j]
        values = frame[spec.name].to_numpy(dtype=object)[present]
        index = pd.Index(spec.vocabulary, dtype=object).get_indexer(values)
        unseen = index < 0
        index[unseen] = spec.oov_index
        if present.any():
            probabilities = self._probabilities(outputs, j, present)
            encoder.encode(index.astype(np.int32), _model.Categorical(perfect=False), probabilities)
        literals = list(dict.fromkeys(values[unseen]))  # first-seen order
        if len(literals) > 1:
            position = pd.Index(literals, dtype=object).get_indexer(values[unseen])
            sizes = np.full(len(position), len(literals), dtype=np.int32)
            encoder.encode(position.astype(np.int32), _model.Uniform(), sizes)
        return [str(v) for v in literals]

    def _probabilities(self, outputs: DecoderOutputs, j: int, present: np.ndarray) -> np.ndarray:
        logits = outputs.logits[present, self._offsets[j] : self._offsets[j + 1]]
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    # ---------------------------------------------------------------- decoding
    def decode(self, header: dict, words: np.ndarray) -> pd.DataFrame:
        n = int(header["n"])
        decoder = _queue.RangeDecoder(np.asarray(words, dtype=np.uint32))
        z = np.zeros((n, self._net.latent_dim))
        for i, step in enumerate(header["latent_step"]):
            if step is None:
                continue
            top = _latent_top(step)
            symbols = decoder.decode(_model.QuantizedGaussian(-top, top, 0.0, 1.0 / step), n)
            z[:, i] = symbols * step
        outputs = self._net(z)
        missing = [_decode_mask(decoder, n, int(count)) for count in header["missing"]]
        columns: dict[str, object] = {}
        for j, spec in enumerate(self._encoding.numeric):
            present = ~missing[j]
            grid = grid_from_dict(header["grids"][j])
            model = _numeric_model(outputs, j, present, spec, grid)
            x = np.full(n, np.nan)
            spikes, widening = header["grids"][j]["spikes"], header["grids"][j]["widening"]
            count = int(present.sum())
            x[present] = _decode_numbers(decoder, count, grid, model, spikes, widening)
            columns[spec.name] = x
        offset = len(self._encoding.numeric)
        for j, spec in enumerate(self._encoding.categorical):
            present = ~missing[offset + j]
            columns[spec.name] = self._decode_categories(
                decoder, outputs, j, present, header["literals"][j]
            )
        return pd.DataFrame(columns, index=pd.RangeIndex(n))

    def _decode_categories(self, decoder, outputs, j, present, literals) -> np.ndarray:
        spec = self._encoding.categorical[j]
        out = np.full(len(present), None, dtype=object)
        if not present.any():
            return out
        probabilities = self._probabilities(outputs, j, present)
        index = decoder.decode(_model.Categorical(perfect=False), probabilities)
        vocabulary = np.asarray(list(spec.vocabulary) + [None], dtype=object)
        values = vocabulary[index]
        unseen = np.flatnonzero(index == spec.oov_index)
        if len(literals) > 1:
            sizes = np.full(len(unseen), len(literals), dtype=np.int32)
            position = decoder.decode(_model.Uniform(), sizes)
        else:
            position = np.zeros(len(unseen), dtype=int)
        literal_array = np.asarray(literals, dtype=object)
        if len(unseen):
            values[unseen] = literal_array[position]
        out[present] = values
        return out


# -------------------------------------------------------------------- the code
def _snap_step(step: float) -> float:
    """A step with a 6-bit mantissa (exactly representable, the same on every machine)."""
    mantissa, exponent = math.frexp(max(step, MIN_LATENT_STEP))
    return math.ldexp(round(mantissa * 64) / 64, exponent)


def _latent_top(step: float) -> int:
    return int(math.ceil(PRIOR_RANGE / step)) + 1


# -------------------------------------------------------------------- masks
def _encode_mask(encoder, mask: np.ndarray) -> None:
    count = int(mask.sum())
    if 0 < count < len(mask):
        encoder.encode(mask.astype(np.int32), _model.Bernoulli(count / len(mask), perfect=False))


def _decode_mask(decoder, n: int, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(n, dtype=bool)
    if count == n:
        return np.ones(n, dtype=bool)
    return decoder.decode(_model.Bernoulli(count / n, perfect=False), n).astype(bool)


# -------------------------------------------------------------------- numbers
@dataclass(frozen=True)
class _NumericModel:
    """The decoder's Gaussian for one column's present values, on the grid's index axis."""

    center: np.ndarray  # int64: round(m)
    mean: np.ndarray  # float64: the high part's Gaussian mean
    std: np.ndarray  # float64: the high part's Gaussian std
    shift: np.ndarray  # int64: low bits coded uniformly
    location: np.ndarray  # float64: m, the Gaussian's mean on the index axis
    spread: np.ndarray  # float64: its standard deviation there


def _numeric_model(outputs: DecoderOutputs, j: int, present: np.ndarray, spec, grid):
    if grid.step == 0:
        return None
    mu = outputs.numeric_mean[present, j]
    sigma = np.exp(0.5 * outputs.numeric_log_var[present, j])

    def on_grid(u: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            x = spec.center + spec.scale * np.sinh(np.clip(u, -700.0, 700.0))
            return np.nan_to_num(grid.coordinate(x), nan=0.0, posinf=MAX_INDEX, neginf=-MAX_INDEX)

    m = np.clip(on_grid(mu), -MAX_INDEX, MAX_INDEX)
    with np.errstate(invalid="ignore"):
        spread = 0.5 * (on_grid(mu + sigma) - on_grid(mu - sigma))
    spread = np.clip(np.nan_to_num(spread, nan=MAX_SPREAD), MIN_SPREAD, MAX_SPREAD)
    # Snapped so that a last-bit difference between machines rarely changes a parameter.
    m = np.rint(m * 256.0) / 256.0
    mantissa, exponent = np.frexp(spread)
    spread = np.ldexp(np.rint(mantissa * 64.0) / 64.0, exponent)
    return _NumericModel(*_split(m, spread), m, spread)


def _split(m: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, ...]:
    """(center, mean, std, shift): the Gaussian of the residual's high part."""
    _, over = np.frexp(spread / SPREAD_TARGET)
    shift = np.maximum(over, 0).astype(np.int64)
    center = np.rint(m).astype(np.int64)
    scale = np.ldexp(1.0, shift)
    mean = (m - center + 0.5) / scale - 0.5
    return center, mean, spread / scale, shift


def _rescaled(model: _NumericModel, exponent: int) -> _NumericModel:
    spread = np.clip(np.ldexp(model.spread, exponent), MIN_SPREAD, MAX_SPREAD)
    return _NumericModel(*_split(model.location, spread), model.location, spread)


def choose_widening(model: _NumericModel, k: np.ndarray, ok: np.ndarray) -> int:
    """The power of 2 by which the decoder's spreads are scaled for this column and block,
    the one that codes its values in the fewest bits: a floored or over-confident decoder
    variance is corrected once per column, for a few bits of header."""
    from scipy.special import ndtr

    if not ok.any():
        return 0
    offset = (k - model.center)[ok] - (model.location - model.center)[ok]
    spread = model.spread[ok]
    costs = []
    for exponent in WIDENINGS:
        s = np.clip(np.ldexp(spread, exponent), MIN_SPREAD, MAX_SPREAD)
        p = ndtr((offset + 0.5) / s) - ndtr((offset - 0.5) / s)
        costs.append(-np.log2(np.maximum(p, 2.0**-24)).sum())
    return int(WIDENINGS[int(np.argmin(costs))])


def _encode_numbers(encoder, x, grid, tolerance, model, spikes, widening: int) -> None:
    if model is None:  # no grid: every value raw
        _encode_raw(encoder, x)
        return
    if not len(x):
        return
    k, ok = grid.representable(x, tolerance)
    if spikes:
        which = _spike_symbols(k, ok, spikes)
        _code_spikes(encoder, which, model, spikes)
        rest = which == 0
        x, k, ok, model = x[rest], k[rest], ok[rest], _take(model, rest)
    model = _rescaled(model, widening)
    residual = k - model.center
    high = residual >> model.shift  # floor division by 2**shift
    far = ok & (np.abs(high) > WINDOW)
    symbols = np.where(ok, np.where(far, FAR, high), RAW).astype(np.int32)
    encoder.encode(symbols, _QG_FAMILY, model.mean, model.std)
    inside = (symbols != FAR) & (symbols != RAW)
    low = residual - (high << model.shift)
    _encode_pieces(encoder, low[inside].astype(np.uint64), model.shift[inside])
    for value in residual[far]:
        _encode_far(encoder, int(value))
    _encode_raw(encoder, x[symbols == RAW])


def _decode_numbers(decoder, count: int, grid, model, spikes, widening: int) -> np.ndarray:
    if model is None:
        return _decode_raw(decoder, count)
    if count == 0:
        return np.zeros(0)
    if spikes:
        which = _code_spikes(decoder, None, model, spikes)
        x = np.zeros(count)
        hit = which > 0
        x[hit] = grid.value(np.asarray(spikes, dtype=np.int64)[which[hit] - 1])
        rest = _take(model, ~hit)
        x[~hit] = _decode_numbers(decoder, int((~hit).sum()), grid, rest, [], widening)
        return x
    model = _rescaled(model, widening)
    symbols = decoder.decode(_QG_FAMILY, model.mean, model.std).astype(np.int64)
    inside = (symbols != FAR) & (symbols != RAW)
    low = _decode_pieces(decoder, model.shift[inside]).astype(np.int64)
    residual = np.zeros(count, dtype=np.int64)
    residual[inside] = (symbols[inside] << model.shift[inside]) + low
    far = np.flatnonzero(symbols == FAR)
    residual[far] = [_decode_far(decoder) for _ in far]
    x = grid.value(model.center + residual)
    raw = symbols == RAW
    x[raw] = _decode_raw(decoder, int(raw.sum()))
    return x


# -------------------------------------------------------------------- spikes
def choose_spikes(k: np.ndarray, ok: np.ndarray) -> list[int]:
    """The bin indices of the block's most frequent exact values (at least SPIKE_SHARE of
    the values each, at most MAX_SPIKES): zeros, 0.00 / 1.00 rates, a default value."""
    values, counts = np.unique(k[ok], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:MAX_SPIKES]
    keep = counts[order] >= max(SPIKE_SHARE * len(k), 8)
    return [int(v) for v in values[order][keep]]


def _spike_symbols(k: np.ndarray, ok: np.ndarray, spikes: list[int]) -> np.ndarray:
    which = np.zeros(len(k), dtype=np.int32)
    for i, spike in enumerate(spikes):
        which[ok & (k == spike) & (which == 0)] = i + 1
    return which


def _spike_contexts(model: _NumericModel, spikes: list[int]) -> np.ndarray:
    """Which spike the decoder's Gaussian is nearest, and how near (in its spreads)."""
    distance = np.abs(np.asarray(spikes, dtype=np.float64)[None, :] - model.location[:, None])
    distance /= model.spread[:, None]
    nearest = np.argmin(distance, axis=1)
    bucket = np.digitize(distance[np.arange(len(nearest)), nearest], SPIKE_BUCKETS)
    return nearest * (len(SPIKE_BUCKETS) + 1) + bucket


def _code_spikes(coder, which, model: _NumericModel, spikes: list[int]) -> np.ndarray:
    """Adaptive coding of "which spike, or none" per context (the spike the decoder's mean
    is nearest, and how near in its spreads): the decoder's Gaussian cannot put the mass of
    an exact value in one bin (its variance is floored), so the block learns how often the
    value is exactly the spike the decoder points at. Counts are updated after every
    SPIKE_BATCH rows, identically on both sides. Encodes `which` (0, or 1 + the spike's
    position in `spikes`), or decodes it when `which` is None."""
    contexts = _spike_contexts(model, spikes)
    n_contexts = len(spikes) * (len(SPIKE_BUCKETS) + 1)
    counts = np.full((n_contexts, len(spikes) + 1), SPIKE_PRIOR)
    out = np.zeros(len(contexts), dtype=np.int32)
    family = _model.Categorical(perfect=False)
    for start in range(0, len(contexts), SPIKE_BATCH):
        rows = slice(start, start + SPIKE_BATCH)
        table = counts[contexts[rows]]
        probabilities = table / table.sum(axis=1, keepdims=True)
        if which is None:
            out[rows] = coder.decode(family, probabilities)
        else:
            coder.encode(which[rows].astype(np.int32), family, probabilities)
            out[rows] = which[rows]
        np.add.at(counts, (contexts[rows], out[rows]), 1.0)
    return out


def _take(model: _NumericModel, rows: np.ndarray) -> _NumericModel:
    return _NumericModel(*(getattr(model, f)[rows] for f in model.__dataclass_fields__))


def _encode_pieces(encoder, values: np.ndarray, widths: np.ndarray) -> None:
    """The low `widths` bits of each value, in uniform symbols of at most PIECE_BITS bits."""
    values = values.astype(np.uint64)
    widths = widths.astype(np.int64)
    for start in range(0, int(widths.max(initial=0)), PIECE_BITS):
        rows = widths > start
        size = np.minimum(widths[rows] - start, PIECE_BITS)
        piece = (values[rows] >> np.uint64(start)) & ((np.uint64(1) << size.astype(np.uint64)) - 1)
        encoder.encode(piece.astype(np.int32), _model.Uniform(), (1 << size).astype(np.int32))


def _decode_pieces(decoder, widths: np.ndarray) -> np.ndarray:
    widths = widths.astype(np.int64)
    values = np.zeros(len(widths), dtype=np.uint64)
    for start in range(0, int(widths.max(initial=0)), PIECE_BITS):
        rows = widths > start
        size = np.minimum(widths[rows] - start, PIECE_BITS)
        piece = decoder.decode(_model.Uniform(), (1 << size).astype(np.int32))
        values[rows] |= piece.astype(np.uint64) << np.uint64(start)
    return values


def _encode_far(encoder, residual: int) -> None:
    magnitude = abs(residual)
    length = magnitude.bit_length()  # >= 1: a far residual is never 0
    head = np.asarray([2 * length + (residual < 0)], dtype=np.int32)
    encoder.encode(head, _model.Uniform(128))
    rest = magnitude - (1 << (length - 1))
    _encode_pieces(encoder, np.asarray([rest], np.uint64), np.asarray([length - 1]))


def _decode_far(decoder) -> int:
    head = int(decoder.decode(_model.Uniform(128), 1)[0])
    length, negative = head // 2, head % 2
    rest = int(_decode_pieces(decoder, np.asarray([length - 1]))[0])
    magnitude = (1 << (length - 1)) + rest
    return -magnitude if negative else magnitude


def _encode_raw(encoder, x: np.ndarray) -> None:
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    _encode_pieces(encoder, bits, np.full(len(bits), 64))


def _decode_raw(decoder, count: int) -> np.ndarray:
    return _decode_pieces(decoder, np.full(count, 64)).view(np.float64)


# -------------------------------------------------------------------- header
def header_bytes(header: dict) -> bytes:
    return zlib.compress(json.dumps(header, separators=(",", ":")).encode("utf-8"), 9)


def header_from_bytes(data: bytes) -> dict:
    return json.loads(zlib.decompress(data).decode("utf-8"))
