"""One block of records <-> bytes, entropy-coded under the model with constriction's range coder.

The symbols of a block, in the order both sides code them:

1. The code: the posterior mean, quantized per dimension with step `latent_step` x the
   block's median posterior standard deviation of that dimension (with
   `compress.latent_search`, the multiple of that step, or no code, that makes the block
   smallest, chosen by the encoder and kept in the header), under the prior N(0, 1)
   (QuantizedGaussian), or, when it codes the dimension in fewer bits, under a `context`
   mixture with the prior as base measure and earlier dimensions as contexts. A dimension
   whose posterior is as wide as the prior (unused by the model) is not coded: it decodes
   to 0. The decoder (`network.DecoderNet`) then turns the dequantized code into every
   column's distribution.
2. Missing masks: one Bernoulli per row for each column with some but not all values missing,
   at the block's missing rate (stored in the header).
3. Categories, column by column, under the decoder's softmax (a confident right guess costs
   almost nothing) or a `context` mixture over it (contexts: its argmax, earlier
   categories); a value outside the vocabulary is the OOV class, then its index in the
   block's list of unseen values (kept as text in the header).
4. Numbers, column by column. A value's bin index k on the column's tolerance grid (`quantize.Grid`,
   or `quantize.UnitGrid` for integers and short decimals, in units of their last digit) is coded
   either under a `context` mixture (base measure: the decoder's Gaussian over the block's range of
   indices; contexts: the decoder's bin, earlier categories and numbers) or as the residual d = k -
   round(m) under the decoder's Gaussian itself, whichever the encoder finds cheaper (a header flag:
   the mixture's code length estimated, `context.estimate`, the Gaussian's measured on a scratch
   coder). m is the decoder's mean mapped onto the grid's continuous index (original units:
   `NumericSpec.inverse`, the inverse asinh or rank-Gaussian map, then `Grid.coordinate`), its width
   the secant of the +-1 sigma points mapped the same way: the decoder's Gaussian pushed forward
   through the inverse map and the grid, linearised per record. The linearisation only costs bits,
   never correctness: any distribution the decoder can rebuild is a valid code. The Gaussian path
   has two corrections fitted per column and block: spikes (the block's most frequent exact values,
   coded first as "which spike, or none", adaptively) and a widening (the power of 2 by which the
   decoder's spreads are scaled). A wide Gaussian is split: the residual's high part under the
   Gaussian, its low `b` bits uniform. Escapes: a residual beyond 32 standard deviations (FAR: its
   sign and bit length, then its bits) and a value the grid cannot hit within its bound (RAW: the 64
   bits of the float64); a column with such a value is never coded by the mixture.

With `compress.dictionary`, both sides count the dictionary's records into every context
model before the block's first value (`_Dictionary`): its codes on the block's latent steps,
its categories and its values on the block's grids.

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

from configs.schema import CompressConfig
from pipeline.archive import context
from pipeline.archive.network import DecoderNet, DecoderOutputs
from pipeline.archive.quantize import MAX_INDEX, choose_grid, column_tolerance, grid_from_dict

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
MAX_STEP_LISTS = 4  # the dictionary's codes and decoder outputs kept, one per step list
MAX_STATE_BYTES = 1 << 29  # and at most about this many bytes of them
HEADER_BITS_PER_CHAR = 1.5  # about what a header's JSON costs a char, zlib'd (its keys repeat)
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

    def __init__(
        self, model, encoding, settings: CompressConfig, dictionary: pd.DataFrame | None = None
    ) -> None:
        self._model = model
        self._net = DecoderNet(model)
        self._encoding = encoding
        self._settings = settings
        cards = [spec.cardinality for spec in encoding.categorical]
        self._offsets = np.concatenate([[0], np.cumsum(cards)]).astype(int)
        self._dictionary = _Dictionary(dictionary, encoding, model)

    # ---------------------------------------------------------------- encoding
    def encode(self, frame: pd.DataFrame) -> CodedBlock:
        """The block coded at the latent step that makes it smallest (`latent_scales`): a
        finer code costs more bits than it saves the values when the context models (and a
        dictionary) already predict them. The steps travel in the header, so the decoder
        needs no search."""
        z_mean, spread = self._posterior(frame)
        # Coarser and coarser until a block grows, then (if no coarser step won) finer: its
        # size is about convex in the step (a finer code buys the values fewer bits, at a
        # falling rate), so a block whose configured step is best costs three tries.
        coarser, finer = latent_scales(self._settings)
        best, won = None, False
        for ladder in (coarser, finer if len(coarser) > 1 else ()):
            for scale in ladder:
                block = self._encode_at(frame, z_mean, spread, scale)
                if best is not None and _block_bits(block) >= _block_bits(best):
                    break
                won, best = best is not None, block
            if won:
                break
        return best

    def _posterior(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(posterior means, the block's median posterior std per dimension)."""
        z_mean, z_log_var = self._model.encode(self._encoding.encode(frame))
        z_mean = np.asarray(z_mean, dtype=np.float64)
        spread = np.median(np.exp(0.5 * np.asarray(z_log_var, dtype=np.float64)), axis=0)
        return z_mean, spread

    def _encode_at(self, frame, z_mean, spread, scale: float | None) -> CodedBlock:
        n = len(frame)
        encoder = _queue.RangeEncoder()
        bits = Bits()
        header: dict = {"n": n}
        z = self._encode_latent(z_mean, spread, scale, encoder, header)
        bits.code = encoder.num_bits()
        outputs = self._net(z)
        missing = self._missing(frame)
        header["missing"] = [int(m.sum()) for m in missing]
        for mask in missing:
            _encode_mask(encoder, mask)
        bits.masks = encoder.num_bits() - bits.code
        # Categories first: they are the numbers' candidate parents (`context`).
        parents = _Known(self._dictionary)
        header["literals"], header["category_mix"] = [], []
        for j, _ in enumerate(self._encoding.categorical):
            literals, index, mix = self._encode_categories(
                encoder, frame, j, outputs, missing, parents
            )
            header["literals"].append(literals)
            header["category_mix"].append(mix)
            parents.add(f"c{j}", index, self._dictionary.classes[j])
        bits.categories = encoder.num_bits() - bits.code - bits.masks
        header["grids"] = []
        for j in range(len(self._encoding.numeric)):
            entry, decoded = self._encode_numeric_column(
                encoder, frame, j, outputs, ~missing[j], parents
            )
            header["grids"].append(entry)
            parents.add(f"n{j}", decoded, self._dictionary.on_grid(j, header["grids"][j]))
        bits.numbers = encoder.num_bits() - bits.code - bits.masks - bits.categories
        return CodedBlock(header, encoder.get_compressed(), bits)

    def _encode_numeric_column(self, encoder, frame, j: int, outputs, present, parents):
        """Code one numeric column's present values; returns its header entry (the grid, and
        the spikes and widening, or the mixture's range and parents, the decoder needs) and
        the values the column decodes to (NaN where missing)."""
        spec = self._encoding.numeric[j]
        column = frame[spec.name].to_numpy(dtype=np.float64)
        x = column[present]
        tolerance = column_tolerance(self._settings, spec.name)
        grid = choose_grid(x, tolerance)
        model = _numeric_model(outputs, j, present, spec, grid)
        spikes, widening, mix = [], 0, None
        k, ok = grid.representable(x, tolerance)
        primer = self._dictionary.numeric(j, grid, tolerance)
        theirs = self._dictionary.numeric_model(j, spec, grid)
        view = parents.view(present, primer, theirs)
        if model is not None and len(x):
            spikes = choose_spikes(k, ok)
            rest = _spike_symbols(k, ok, spikes) == 0
            widening = choose_widening(_take(model, rest), k[rest], ok[rest])
            mix = _choose_mixture(x, grid, tolerance, model, spikes, widening, k, ok, view)
        if mix is None:
            _encode_numbers(encoder, x, grid, tolerance, model, spikes, widening)
        else:
            _encode_mixture(encoder, k, model, mix, view)
        if mix is not None:  # the Gaussian's corrections are not used: not stored
            spikes, widening = [], 0
        entry = {**grid.to_dict(), "spikes": spikes, "widening": widening, "mix": mix}
        decoded = column.copy()
        if len(x):
            decoded[present] = np.where(ok, grid.value(k), x)
        return entry, decoded

    def _encode_latent(self, z_mean, spread, scale: float | None, encoder, header: dict):
        """Code the posterior means on steps of `scale` x the block's posterior std (scale
        None: no code at all, every dimension decodes to 0); returns the dequantized code."""
        steps = [
            None if scale is None or s >= UNUSED_DIMENSION else _snap_step(scale * s)
            for s in spread
        ]
        header["latent_step"] = steps
        header["latent_parents"] = []
        self._dictionary.quantize(steps, self._net)
        z = np.zeros_like(z_mean)
        for i, step in enumerate(steps):
            if step is None:
                header["latent_parents"].append(None)
                continue
            top = _latent_top(step)
            symbols = np.clip(np.rint(z_mean[:, i] / step), -top, top).astype(np.int32)
            mine = self._dictionary.latent(i, top)
            parents = _choose_latent_parents(symbols, z, steps[:i], top, step, mine)
            header["latent_parents"].append(parents)
            _code_latent(encoder, symbols, z, parents, top, step, primed=mine)
            z[:, i] = symbols * step
        return z

    def _missing(self, frame: pd.DataFrame) -> list[np.ndarray]:
        masks = [frame[s.name].isna().to_numpy() for s in self._encoding.numeric]
        masks += [frame[s.name].isna().to_numpy() for s in self._encoding.categorical]
        return masks

    def _encode_categories(self, encoder, frame, j, outputs, missing, parents):
        """Code one categorical column; returns (its unseen values, in first-seen order, each
        record's class index, -1 where missing: a context for what follows, and the header
        entry of its mixture, None when the softmax alone codes it in fewer bits)."""
        spec = self._encoding.categorical[j]
        present = ~missing[len(self._encoding.numeric) + j]
        values = frame[spec.name].to_numpy(dtype=object)[present]
        index = pd.Index(spec.vocabulary, dtype=object).get_indexer(values)
        unseen = index < 0
        index[unseen] = spec.oov_index
        mix = None
        if present.any():
            probabilities = self._probabilities(outputs, j, present)
            view = parents.view(present, self._dictionary.class_primer(j), self._argmax(j))
            mix = _choose_category_mixture(index, probabilities, view)
            _encode_classes(encoder, index, probabilities, mix, view)
        literals = list(dict.fromkeys(values[unseen]))  # first-seen order
        if len(literals) > 1:
            position = pd.Index(literals, dtype=object).get_indexer(values[unseen])
            sizes = np.full(len(position), len(literals), dtype=np.int32)
            encoder.encode(position.astype(np.int32), _model.Uniform(), sizes)
        classes = np.full(len(present), -1, dtype=np.int64)
        classes[present] = index
        return [str(v) for v in literals], classes, mix

    def _argmax(self, j: int) -> np.ndarray | None:
        """The decoder's most likely class of categorical column j for the dictionary's
        records where it is present (None without a dictionary)."""
        outputs = self._dictionary.outputs
        if outputs is None:
            return None
        present = self._dictionary.classes[j] >= 0
        return self._dictionary.memo(
            ("argmax", j), lambda: np.argmax(self._probabilities(outputs, j, present), axis=1)
        )

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
        self._dictionary.quantize(header["latent_step"], self._net)
        for i, step in enumerate(header["latent_step"]):
            if step is None:
                continue
            top = _latent_top(step)
            parents, mine = header["latent_parents"][i], self._dictionary.latent(i, top)
            z[:, i] = _code_latent(decoder, None, z, parents, top, step, n, mine) * step
        outputs = self._net(z)
        missing = [_decode_mask(decoder, n, int(count)) for count in header["missing"]]
        columns: dict[str, object] = {}
        parents = _Known(self._dictionary)
        offset = len(self._encoding.numeric)
        for j, spec in enumerate(self._encoding.categorical):
            present = ~missing[offset + j]
            mix = header["category_mix"][j]
            columns[spec.name], classes = self._decode_categories(
                decoder, outputs, j, present, header["literals"][j], mix, parents
            )
            parents.add(f"c{j}", classes, self._dictionary.classes[j])
        for j, spec in enumerate(self._encoding.numeric):
            present = ~missing[j]
            entry = header["grids"][j]
            grid = grid_from_dict(entry)
            model = _numeric_model(outputs, j, present, spec, grid)
            x = np.full(n, np.nan)
            count = int(present.sum())
            if entry.get("mix") is None:
                x[present] = _decode_numbers(
                    decoder, count, grid, model, entry["spikes"], entry["widening"]
                )
            else:
                tolerance = column_tolerance(self._settings, spec.name)
                primer = self._dictionary.numeric(j, grid, tolerance)
                theirs = self._dictionary.numeric_model(j, spec, grid)
                view = parents.view(present, primer, theirs)
                x[present] = _decode_mixture(decoder, grid, model, entry["mix"], view)
            columns[spec.name] = x
            parents.add(f"n{j}", x, self._dictionary.on_grid(j, entry))
        names = [s.name for s in self._encoding.numeric + self._encoding.categorical]
        return pd.DataFrame({name: columns[name] for name in names}, index=pd.RangeIndex(n))

    def _decode_categories(self, decoder, outputs, j, present, literals, mix, parents):
        spec = self._encoding.categorical[j]
        out = np.full(len(present), None, dtype=object)
        classes = np.full(len(present), -1, dtype=np.int64)
        if not present.any():
            return out, classes
        probabilities = self._probabilities(outputs, j, present)
        view = parents.view(present, self._dictionary.class_primer(j), self._argmax(j))
        index = _decode_classes(decoder, probabilities, mix, view)
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
        classes[present] = index
        return out, classes


# -------------------------------------------------------------------- the code
def latent_scales(settings: CompressConfig) -> tuple[tuple, tuple]:
    """(the coarser ladder, the finer one) of latent steps, in posterior stds, the encoder
    tries per block: `latent_step`, then with `compress.latent_search` 2x and 4x coarser and
    no code (None), or 2x and 4x finer."""
    step = float(settings.latent_step)
    if not settings.latent_search:
        return (step,), ()
    return (step, 2 * step, 4 * step, None), (step / 2, step / 4)


def _block_bits(block: CodedBlock) -> float:
    """What a block costs: its range-coder words and its header (zlib'd JSON)."""
    return 32 * len(block.words) + 8 * len(header_bytes(block.header))


def _nbytes(state: tuple) -> int:
    """Bytes of a dictionary state's arrays (z and the decoder's outputs)."""
    z, _, outputs, _ = state
    return z.nbytes + sum(a.nbytes for a in vars(outputs).values() if hasattr(a, "nbytes"))


def _snap_step(step: float) -> float:
    """A step with a 6-bit mantissa (exactly representable, the same on every machine)."""
    mantissa, exponent = math.frexp(max(step, MIN_LATENT_STEP))
    return math.ldexp(round(mantissa * 64) / 64, exponent)


def _latent_top(step: float) -> int:
    return int(math.ceil(PRIOR_RANGE / step)) + 1


def _choose_latent_parents(
    symbols, z, earlier_steps, top: int, step: float, primed=None
) -> list[int] | None:
    """Earlier latent dimensions whose symbols tell about this one's (the aggregate
    posterior is no product of independent priors), or None when the prior alone codes
    the dimension in fewer bits (both code lengths estimated, nothing coded)."""
    used = [i for i, s in enumerate(earlier_steps) if s is not None]
    candidates = {i: context.compact(z[:, i])[0] for i in used}
    shifted = symbols.astype(np.int64) + top
    parents = context.choose_parents(shifted, candidates) if used else []
    prior, contexts, primer = _latent_inputs(z, parents, top, step, len(symbols), primed)
    exact = _latent_prior(top, step, floor=0.0)[shifted]
    plain = -np.log2(np.maximum(exact, 2.0**-24)).sum()
    mixed = context.estimate(shifted, prior[shifted], 2 * top + 1, contexts, primer)
    return parents if mixed + _header_bits(parents) < plain + _header_bits(None) else None


def _latent_prior(top: int, step: float, floor: float = context.FLOOR) -> np.ndarray:
    """The prior's mass on each symbol -top..top (the tails folded into the end ones)."""
    from scipy.special import ndtr

    edges = (np.arange(-top, top + 2, dtype=np.float64) - 0.5) * step
    cdf = ndtr(edges)
    cdf[0], cdf[-1] = 0.0, 1.0
    prior = np.maximum(np.diff(cdf), floor)
    return prior / prior.sum()


def _latent_inputs(z, parents, top: int, step: float, n: int, primed=None):
    """(the prior's bins, the contexts, the primer) of a latent dimension's mixture."""
    prior = _latent_prior(top, step)
    # The dictionary's z, and its symbols of this dimension shifted to 0..2 top.
    primed_z, primer = (np.zeros((0, z.shape[1])), None) if primed is None else primed
    rows = len(primed_z)
    values = [np.concatenate([primed_z[:, i], z[:, i]]) for i in parents]
    contexts = context.contexts(np.zeros(rows + n), values, rows, primed_prediction=True)
    return prior, contexts, primer


def _code_latent(
    coder, symbols, z, parents, top: int, step: float, count: int | None = None, primed=None
):
    """One latent dimension's symbols under the prior N(0, 1) (parents None), or under a
    mixture with the prior as base measure and earlier dimensions as contexts (primed with
    the dictionary's codes, `primed` = (their z, their symbols)). Encodes `symbols`, or
    decodes `count` of them when `symbols` is None."""
    family = _model.QuantizedGaussian(-top, top, 0.0, 1.0 / step)
    if parents is None:
        if symbols is None:
            return np.asarray(coder.decode(family, count), dtype=np.int64)
        coder.encode(symbols, family)
        return symbols
    n = len(z) if symbols is None else len(symbols)
    prior, contexts, primer = _latent_inputs(z, parents, top, step, n, primed)
    base = lambda r: np.broadcast_to(prior, (len(range(n)[r]), len(prior)))  # noqa: E731
    shifted = None if symbols is None else (symbols + top).astype(np.int32)
    out, _ = context.code(coder, shifted, base, n, 2 * top + 1, contexts, primer)
    return out.astype(np.int64) - top


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
            x = spec.inverse(u)
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


# -------------------------------------------------------------------- the mixture
def _choose_category_mixture(index, probabilities, view: _View) -> dict | None:
    """A category's mixture (the decoder's softmax as base measure; contexts: its argmax and
    up to two earlier categories) when it codes the column in fewer bits than the softmax
    (both code lengths estimated, nothing coded)."""
    mix = {"parents": view.choose_parents(index.astype(np.int64))}
    rows = np.arange(len(index))
    plain = -np.log2(np.maximum(probabilities[rows, index], 2.0**-24)).sum()
    base, contexts = _class_inputs(probabilities, mix, view)
    picked = base(slice(None))[rows, index]
    mixed = context.estimate(index, picked, probabilities.shape[1], contexts, view.symbols())
    return mix if mixed + _header_bits(mix) < plain + _header_bits(None) else None


def _class_inputs(probabilities, mix: dict, view: _View):
    floored = np.maximum(probabilities, context.FLOOR)
    floored /= floored.sum(axis=1, keepdims=True)
    key = ("classes", tuple(mix["parents"]))
    if key not in view.cache:  # the encoder's choice and its code share them
        prediction = np.argmax(probabilities, axis=1)
        view.cache[key] = view.contexts(prediction, mix["parents"], view.primed_model)
    return (lambda rows: floored[rows]), view.cache[key]


def _encode_classes(encoder, index, probabilities, mix, view: _View) -> None:
    if mix is None:
        encoder.encode(index.astype(np.int32), _model.Categorical(perfect=False), probabilities)
        return
    base, contexts = _class_inputs(probabilities, mix, view)
    size = probabilities.shape[1]
    context.code(encoder, index.astype(np.int32), base, len(index), size, contexts, view.symbols())


def _decode_classes(decoder, probabilities, mix, view: _View) -> np.ndarray:
    if mix is None:
        return decoder.decode(_model.Categorical(perfect=False), probabilities)
    base, contexts = _class_inputs(probabilities, mix, view)
    size = probabilities.shape[1]
    count = len(probabilities)
    return context.code(decoder, None, base, count, size, contexts, view.symbols())[0]


def _choose_mixture(x, grid, tolerance, model, spikes, widening, k, ok, view: _View):
    """The mixture's header entry (`context`) when it codes the column in fewer bits than the
    Gaussian with spikes, else None: the Gaussian's code is made on a scratch coder (it is
    cheap), the mixture's length estimated (`context.estimate`, within a few bytes of its
    code), each with its header entry."""
    if not ok.all():
        return None
    lo, hi = int(k.min()), int(k.max())
    if hi - lo + 1 > context.MAX_ALPHABET:
        return None
    mix = {"lo": lo, "size": hi - lo + 1, "widening": choose_widening(model, k, ok)}
    mix["parents"] = view.choose_parents(k - lo, lo, hi - lo + 1)
    scratch = _queue.RangeEncoder()  # the Gaussian's code is cheap to make: made, measured
    _encode_numbers(scratch, x, grid, tolerance, model, spikes, widening)
    mixed = _mixture_bits(k, model, mix, view) + _header_bits(
        {"spikes": [], "widening": 0, "mix": mix}
    )
    plain = scratch.num_bits() + _header_bits({"spikes": spikes, "widening": widening, "mix": None})
    return mix if mixed < plain else None


def _header_bits(entry) -> float:
    """About what a header entry costs (its JSON, zlib'd with the rest of the header): the
    mixture's longer entry is paid for, which a small block's saving may not cover."""
    return HEADER_BITS_PER_CHAR * len(json.dumps(entry, separators=(",", ":")))


def _mixture_bits(k, model, mix: dict, view: _View) -> float:
    """The mixture's code length of bins k (estimated: `context.estimate`)."""
    _, contexts, primer = _mixture_inputs(model, mix, view)
    symbols = (k - mix["lo"]).astype(np.int64)
    rescaled = _rescaled(model, int(mix["widening"]))
    picked = context.gaussian_pick(rescaled.location - mix["lo"], rescaled.spread, mix["size"],
                                   symbols)  # fmt: skip
    return context.estimate(symbols, picked, mix["size"], contexts, primer)


def _mixture_inputs(model, mix: dict, view: _View):
    """(the decoder's binned Gaussian as a function of rows, the contexts, the primer)."""
    model = _rescaled(model, int(mix["widening"]))
    location, spread, size = model.location - mix["lo"], model.spread, mix["size"]
    prediction = np.clip(np.rint(location), 0, size - 1)
    primed = None
    if view.primed_model is not None:
        theirs = _rescaled(view.primed_model, int(mix["widening"]))
        primed = np.clip(np.rint(theirs.location - mix["lo"]), 0, size - 1)
    key = ("numbers", mix["lo"], size, int(mix["widening"]), tuple(mix["parents"]))
    if key not in view.cache:  # the encoder's choice and its code share them
        view.cache[key] = view.contexts(prediction, mix["parents"], primed)
    contexts = view.cache[key]
    base = context.Gaussian(location, spread, size)
    return base, contexts, view.symbols(mix["lo"], size)


def _encode_mixture(encoder, k, model, mix: dict, view: _View) -> None:
    base, contexts, primer = _mixture_inputs(model, mix, view)
    symbols = (k - mix["lo"]).astype(np.int32)
    context.code(encoder, symbols, base, len(symbols), mix["size"], contexts, primer)


def _decode_mixture(decoder, grid, model, mix: dict, view: _View) -> np.ndarray:
    if not view.present.any():
        return np.zeros(0)
    base, contexts, primer = _mixture_inputs(model, mix, view)
    count = int(view.present.sum())
    symbols, _ = context.code(decoder, None, base, count, mix["size"], contexts, primer)
    return grid.value(mix["lo"] + symbols.astype(np.int64))


# -------------------------------------------------------------------- contexts
class _Dictionary:
    """Records both sides know before a block (`compress.dictionary`, e.g. rows the model
    trained on): their values are counted into the context models first, so that a block
    pays nothing to learn what they already show. Empty when there is none."""

    def __init__(self, frame: pd.DataFrame | None, encoding, model=None) -> None:
        self.rows = 0 if frame is None else len(frame)
        self._z_mean = np.zeros((0, 0))
        if self.rows and model is not None:
            # The Keras encoder runs once per worker, on the same rows on both sides; a machine
            # whose float32 kernels round a mean across a step boundary is caught by the CRC.
            z_mean, _ = model.encode(encoding.encode(frame))
            self._z_mean = np.asarray(z_mean, dtype=np.float64)
        self.z = np.zeros((self.rows, 0))
        self.outputs: DecoderOutputs | None = None
        self._steps: list | None = None
        self._memo: dict = {}  # per (what, column, grid): the same for every block's grid
        self._states: dict = {}  # per step list: (z, symbols, outputs, memo)
        self._symbols: dict[int, np.ndarray] = {}
        self._numbers = []
        self.classes = []
        for spec in encoding.numeric:
            values = frame[spec.name] if frame is not None else pd.Series([], dtype=float)
            self._numbers.append(pd.to_numeric(values, errors="coerce").to_numpy(np.float64))
        for spec in encoding.categorical:
            values = frame[spec.name] if frame is not None else pd.Series([], dtype=object)
            values = values.to_numpy(dtype=object)
            present = pd.notna(values)
            index = pd.Index(spec.vocabulary, dtype=object).get_indexer(values[present])
            index[index < 0] = spec.oov_index
            classes = np.full(len(values), -1, dtype=np.int64)
            classes[present] = index
            self.classes.append(classes)

    def quantize(self, steps, net: DecoderNet) -> None:
        """The dictionary's codes on a block's latent steps, and the decoder's outputs. Kept
        for the last few step lists (blocks of one source mostly share them, and the encoder
        tries a few per block), with what is derived from them (`_memo`): the decoder runs on
        the dictionary once per step list, not per block."""
        if not len(self._z_mean) or (self.outputs is not None and list(steps) == self._steps):
            return
        key = tuple(steps)
        if key not in self._states:
            state = self._state(steps, net)
            # Oldest first out, to MAX_STEP_LISTS and MAX_STATE_BYTES (logits of a wide
            # vocabulary over many rows are large); the state in use always stays.
            while self._states and (
                len(self._states) >= MAX_STEP_LISTS
                or _nbytes(state) * (len(self._states) + 1) > MAX_STATE_BYTES
            ):
                self._states.pop(next(iter(self._states)))
            self._states[key] = state
        self._steps = list(steps)
        self.z, self._symbols, self.outputs, self._memo = self._states[key]

    def _state(self, steps, net: DecoderNet) -> tuple:
        z, symbols = np.zeros_like(self._z_mean), {}
        for i, step in enumerate(steps):
            if step is not None:
                top = _latent_top(step)
                symbols[i] = np.clip(np.rint(self._z_mean[:, i] / step), -top, top)
                z[:, i] = symbols[i] * step
        return z, symbols, net(z), {}

    def latent(self, i: int, top: int):
        """(the dictionary's z, its symbols of dimension i shifted to 0..2 top), or None."""
        if i not in self._symbols:
            return None
        return self.z, (self._symbols[i] + top).astype(np.int32)

    def class_primer(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(present mask, symbols) of categorical column j."""
        classes = self.classes[j]
        return classes >= 0, classes[classes >= 0]

    def memo(self, key: tuple, make):
        """`make()`, kept for the next block that asks with the same key."""
        if key not in self._memo:
            if len(self._memo) > 4096:
                self._memo.clear()
            self._memo[key] = make()
        return self._memo[key]

    def numeric(self, j: int, grid, tolerance) -> tuple[np.ndarray, np.ndarray]:
        """(present mask, bin indices on the block's grid; values the grid cannot hold
        within their bound are marked by -2**62)."""
        key = ("numeric", j, _grid_key(grid.to_dict()), tolerance)
        return self.memo(key, lambda: self._numeric(j, grid, tolerance))

    def _numeric(self, j: int, grid, tolerance) -> tuple[np.ndarray, np.ndarray]:
        x = self._numbers[j]
        present = ~np.isnan(x)
        if grid.step == 0 or not present.any():
            return present, np.full(int(present.sum()), -(2**62), dtype=np.int64)
        k, ok = grid.representable(x[present], tolerance)
        return present, np.where(ok, k, -(2**62))

    def numeric_model(self, j: int, spec, grid):
        """The decoder's Gaussian of numeric column j's present dictionary values on the
        block's grid (None without a dictionary or a grid)."""
        if self.outputs is None:
            return None
        present = ~np.isnan(self._numbers[j])
        key = ("model", j, _grid_key(grid.to_dict()))
        return self.memo(key, lambda: _numeric_model(self.outputs, j, present, spec, grid))

    def on_grid(self, j: int, entry: dict) -> np.ndarray:
        """Column j's values as the block's grid decodes them (NaN where missing): the
        context values a block's records of the same value share."""
        return self.memo(("on_grid", j, _grid_key(entry)), lambda: self._on_grid(j, entry))

    def _on_grid(self, j: int, entry: dict) -> np.ndarray:
        x = self._numbers[j].copy()
        present = ~np.isnan(x)
        if present.any():
            grid = grid_from_dict(entry)
            if grid.step != 0:
                k = grid.index(x[present])
                x[present] = grid.value(k)
        return x


def _grid_key(entry: dict) -> str:
    """A grid's header entry as a key (its grid fields only)."""
    return json.dumps({k: v for k, v in entry.items() if k not in ("spikes", "widening", "mix")},
                      sort_keys=True)  # fmt: skip


class _Known:
    """What both sides know when a column is coded: the earlier columns' values (context
    candidates) for the block's records and for the dictionary's."""

    def __init__(self, dictionary: _Dictionary) -> None:
        self.dictionary = dictionary
        self.block: dict[str, np.ndarray] = {}
        self.primed: dict[str, np.ndarray] = {}
        self.ids: dict[str, tuple[np.ndarray, int]] = {}  # `context.compact` of both, once

    def add(self, key: str, values: np.ndarray, primed: np.ndarray) -> None:
        self.block[key] = np.asarray(values, dtype=np.float64)
        self.primed[key] = np.asarray(primed, dtype=np.float64)
        self.ids[key] = context.compact(np.concatenate([self.primed[key], self.block[key]]))

    def view(self, present: np.ndarray, primer, primed_model=None) -> _View:
        return _View(self, present, *primer, primed_model)


@dataclass
class _View:
    """One column's view of `_Known`: its present records, the dictionary's present ones
    and their symbols."""

    known: _Known
    present: np.ndarray
    primed_present: np.ndarray
    primed_symbols: np.ndarray
    primed_model: object = None  # the decoder's model of the dictionary's values, if known
    cache: dict = field(default_factory=dict)  # contexts made for a mixture, by its entry

    def values(self, key: str) -> np.ndarray:
        """The dictionary's values of `key` (where this column is present), then the
        block's."""
        known = self.known
        return np.concatenate([known.primed[key][self.primed_present],
                               known.block[key][self.present]])  # fmt: skip

    def contexts(self, prediction: np.ndarray, keys, primed=None) -> context.Contexts:
        """The contexts of this column; `primed`: the decoder's bins of the dictionary's
        values (then its bin contexts are primed too)."""
        rows = int(self.primed_present.sum())
        values = [self.ids(key) for key in keys]
        if primed is None:
            return context.contexts(prediction, values, rows)
        both = np.concatenate([primed, prediction])
        return context.contexts(both, values, rows, primed_prediction=True)

    def symbols(self, lo: int = 0, size: int | None = None) -> np.ndarray:
        """The dictionary's symbols in this column's alphabet (-1: none)."""
        s = self.primed_symbols.astype(np.int64) - lo
        if size is not None:
            s = np.where((s >= 0) & (s < size), s, -1)
        return s.astype(np.int32) if len(s) else np.zeros(0, dtype=np.int32)

    def choose_parents(self, symbols, lo: int = 0, size: int | None = None) -> list[str]:
        primed = self.symbols(lo, size)
        keep = primed >= 0
        every = np.concatenate([primed[keep], symbols]).astype(np.int64)
        # The dictionary's records with a symbol in this alphabet, then the block's present.
        rows = self.rows(keep)
        candidates = {}
        for key, (ids, count) in self.known.ids.items():
            candidates[key] = context.recompact(ids[rows], count)
        return context.choose_parents(every, candidates)

    def ids(self, key: str) -> tuple[np.ndarray, int]:
        """`context.compact` of `values(key)`, from the ids `_Known` made once."""
        ids, count = self.known.ids[key]
        mine = context.recompact(ids[self.rows()], count)
        return mine, int(mine.max(initial=-1)) + 1

    def rows(self, keep: np.ndarray | None = None) -> np.ndarray:
        """Where this column's records are in `_Known.ids`: the dictionary's present (those
        of them `keep` marks), then the block's present."""
        primed = self.primed_present.nonzero()[0]
        block = len(self.primed_present) + self.present.nonzero()[0]
        return np.concatenate([primed if keep is None else primed[keep], block])


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
