"""`write_report`: one self-contained HTML page about a model and, optionally, a scored batch.

Sections: training (the ELBO terms per epoch, beta's warm-up, the epoch kept), calibration,
the batch (scores against calibration, flag rate, row accounting), the top anomalies, the
latent space, drift, the code length (rate and distortion in bits, active dimensions) and
records drawn from the model against the training marginals. Everything drawn is reduced
first (histogram bins, samples of at most a few thousand points), so a report of a million
scored rows stays a few hundred kilobytes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from pipeline.core.fs import write_text
from pipeline.report import charts, page
from pipeline.report.charts import GREY, PALETTE, Histogram, Mark, fmt
from pipeline.report.inputs import (
    LOG2,
    ModelFacts,
    ScoreFacts,
    kept_epoch,
    read_bytes_or_none,
    read_model,
    read_parquet,
    read_scores,
)
from pipeline.report.marginals import training_marginals
from pipeline.report.samples import decoded_prior

REPORT_FILE = "report.html"
SAMPLE_ROWS = 2000  # records drawn on the fly when no samples are given (tables)
SAMPLE_IMAGES = 24
TOP_ANOMALIES = 20
TOP_IMAGES = 12
MAX_POINTS = 3000  # points of the latent map
ACTIVE_VARIANCE = 0.01  # a dimension is in use when its posterior mean varies more (Burda 2016)
MAX_MARGINALS = 8


def write_report(
    model_dir: str,
    scores_dir: str | None = None,
    output: str | None = None,
    samples_dir: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> str:
    """Write the HTML report of `model_dir` (and of the score output `scores_dir`, if given).

    Args:
        model_dir: A model bundle.
        scores_dir: A `vaepipe score` output folder (flags/, codes/, summary.json, ...).
        output: The HTML file (default: `scores_dir/report.html`, else `model_dir/report.html`).
        samples_dir: A `vaepipe sample` output to compare with the training data; without it,
            `sample_rows` records are drawn from the model (0: no samples section).
        seed: Seed of the records drawn on the fly.

    Returns:
        The path written.
    """
    started = time.time()
    output = output or os.path.join(scores_dir or model_dir, REPORT_FILE)
    model = read_model(model_dir)
    scores = read_scores(scores_dir, TOP_ANOMALIES, MAX_POINTS) if scores_dir else None
    loader = _ModelLoader(model)
    sections = [
        _training(model),
        _calibration(model),
    ]
    if scores is not None:
        sections += [
            _batch(model, scores),
            _anomalies(model, scores, loader),
            _latent(scores),
            _drift(scores),
        ]
    sections.append(_code_length(model, scores))
    samples = _samples(model, loader, samples_dir, sample_rows, seed)
    if samples is not None:
        sections.append(samples)
    meta = [f"model: {model_dir} ({model.kind})"]
    if scores_dir:
        meta.append(f"scores: {scores_dir}")
    meta.append(f"written {time.strftime('%Y-%m-%d %H:%M:%S')}")
    html = page.render("vaepipe report", meta, [s for s in sections if s is not None])
    write_text(output, html)
    echo(f"report: {output} ({len(html) / 1e6:.2f} MB, {time.time() - started:.1f} s)")
    return output


class _ModelLoader:
    """Loads the Keras model on first use only: most sections need no weights."""

    def __init__(self, facts: ModelFacts):
        self._facts = facts
        self._model = None

    def get(self):
        if self._model is None:
            from pipeline.artifacts.bundle import load_bundle

            self._model = load_bundle(self._facts.directory).model
        return self._model


# ------------------------------------------------------------------------- training
def _training(model: ModelFacts) -> page.Section:
    history = model.history
    if not history.get("loss"):
        return page.Section("training", "Training", page.note("No training history in bundle."))
    epochs = np.arange(1, len(history["loss"]) + 1)
    warmup = model.config.model.kl_warmup_epochs
    kept = kept_epoch(history, warmup)
    marks = [Mark(kept, f"kept: epoch {kept}", "#2ca02c")] if kept else []

    def pair(key: str, title: str, ylabel: str, sign: float = 1.0) -> str:
        series = {}
        if key in history:
            series["training"] = (epochs, sign * np.asarray(history[key], float))
        if f"val_{key}" in history:
            series["validation"] = (epochs, sign * np.asarray(history[f"val_{key}"], float))
        if not series:
            return ""
        return charts.line_chart(series, title, "epoch", ylabel, marks, dashed=["validation"])

    beta = history.get("beta")
    beta_chart = ""
    if beta:
        beta_marks = marks + ([Mark(warmup, "warm-up ends", GREY)] if warmup else [])
        beta_chart = charts.line_chart(
            {"beta (KL weight)": (epochs, beta)}, "beta's warm-up", "epoch", "beta", beta_marks
        )
    body = page.kpis(
        [
            ("epochs run", str(len(epochs)), ""),
            ("epoch kept (lowest validation loss after warm-up)", str(kept or "n/a"), ""),
            (
                "rows: train / validation / calibration",
                " / ".join(
                    f"{model.rows.get(k, 0):,}" for k in ("train", "validation", "calibration")
                ),
                "",
            ),
        ]  # fmt: skip
    ) + page.grid(
        pair("reconstruction_nll", "Reconstruction NLL per record", "nats"),
        pair("kl", "KL(q(z|x) || N(0, I)) per record", "nats"),
        pair("elbo", "ELBO per record (higher is better)", "nats"),
        beta_chart,
    )
    note = page.note(
        "Per-record averages over each epoch. Early stopping watches the validation loss "
        "(reconstruction + beta x KL); epochs of the KL warm-up are not eligible to be kept."
    )
    return page.Section("training", "Training", note + body)


# ---------------------------------------------------------------------- calibration
def _calibration(model: ModelFacts) -> page.Section:
    cal = model.bundle.calibration
    scores = np.asarray(model.bundle.calibration_scores, float)
    edges = _edges(scores, extra=[cal.threshold])
    hist = Histogram("calibration", edges, _density(scores, edges), GREY, filled=True)
    chart = charts.histogram_chart(
        [hist],
        "Calibration scores (held-out training rows)",
        "score (negative ELBO, nats)",
        marks=[Mark(cal.threshold, f"threshold {fmt(cal.threshold)}", "#d62728")],
    )
    above = float(np.mean(scores > cal.threshold)) if len(scores) else 0.0
    body = page.kpis(
        [
            ("calibration rows", f"{len(scores):,}", ""),
            ("threshold (nats)", fmt(cal.threshold), ""),
            ("target false-positive rate", f"{cal.target_fpr:.2%}", ""),
            ("calibration rows above it", f"{above:.2%}", ""),
        ]
    ) + page.grid(chart)
    note = page.note(
        "The threshold is the 1 - target FPR quantile of the scores of a calibration split "
        "held out of training; a record's p-value is the share of calibration scores at or "
        "above its score."
    )
    return page.Section("calibration", "Calibration", note + body)


def _edges(values: np.ndarray, bins: int = 40, extra=()) -> np.ndarray:
    """Bin edges over the bulk of `values` (0.5 to 99.5 %), widened to include `extra`; the
    tails are folded into the end bins by `_density`, so one huge score cannot squash the
    plot."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    low, high = np.quantile(values, [0.005, 0.995])
    for x in extra:
        low, high = min(low, x), max(high, x)
    span = (high - low) or 1.0
    return np.linspace(low - 0.02 * span, high + 0.02 * span, bins + 1)


def _density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    values = np.clip(values[np.isfinite(values)], edges[0], edges[-1])
    counts, _ = np.histogram(values, edges)
    return counts / max(len(values), 1) / np.diff(edges)


# ---------------------------------------------------------------------------- batch
def _batch(model: ModelFacts, scores: ScoreFacts) -> page.Section:
    cal = model.bundle.calibration
    batch, reference = scores.scores["score"].astype(float), model.bundle.calibration_scores
    edges = _edges(np.concatenate([batch, reference]), extra=[cal.threshold])
    title = "Scores of the batch over the calibration scores"
    if scores.sampled:  # the histogram's shape only: the counts below are of every row
        title += f" (histogram of a {len(batch):,}-row sample of {scores.rows:,})"
    chart = charts.histogram_chart(
        [
            Histogram(
                "calibration", edges, _density(np.asarray(reference, float), edges), GREY, True
            ),
            Histogram("this batch", edges, _density(batch, edges), PALETTE[0]),
        ],
        title,
        "score (nats; tails folded into the end bins)",
        marks=[Mark(cal.threshold, "threshold", "#d62728")],
    )
    summary = scores.summary
    scored = int(summary.get("rows_scored", scores.rows))
    flagged = int(summary.get("rows_flagged", scores.flagged))
    share = flagged / scored if scored else 0.0
    read, dead = int(summary.get("rows_read", scored)), int(summary.get("rows_dead_lettered", 0))
    balanced = read == scored + dead
    alarm = summary.get("flag_rate_alarm")
    body = page.kpis(
        [
            ("rows read", f"{read:,}", ""),
            ("scored", f"{scored:,}", ""),
            ("dead-lettered", f"{dead:,}", "bad" if dead else ""),
            ("read = scored + dead-lettered", "yes" if balanced else "NO",
             "good" if balanced else "bad"),
            ("flagged", f"{flagged:,} ({share:.2%})", "bad" if alarm else ""),
            ("target FPR", f"{cal.target_fpr:.2%}", ""),
        ]
    )  # fmt: skip
    body += page.banner(
        alarm or f"Flag rate {share:.2%} is consistent with the calibration data (no alarm).",
        bool(alarm),
    )
    body += page.grid(chart, _flag_rate_chart(share, cal.target_fpr, reference, cal.threshold))
    if scores.dead_reasons:
        body += "<h3>Dead letters by reason</h3>" + page.table(
            ["reason", "records"], list(scores.dead_reasons.items())
        )
        body += page.table(
            ["record", "stage", "reason", "field", "message"],
            [
                [d.get("record_id"), d.get("stage"), d.get("reason"), d.get("field"),
                 _cut(d.get("message"), 160)]
                for d in scores.dead_examples
            ],
        )  # fmt: skip
    return page.Section("batch", "The batch", body)


def _flag_rate_chart(share: float, target: float, reference, threshold: float) -> str:
    calibration_share = float(np.mean(np.asarray(reference) > threshold)) if len(reference) else 0
    return charts.bar_chart(
        ["this batch", "calibration rows", "target FPR"],
        {"share flagged": [share, calibration_share, target]},
        "Flagged share against the target",
        "share of records above the threshold",
    )


def _cut_left(text, limit: int) -> str:
    """The end of a long id (a file path's name matters more than its folders)."""
    text = "" if text is None else str(text)
    return text if len(text) <= limit else "..." + text[-limit:]


def _p(value, n_calibration: int) -> str:
    """A p-value; 0 means above every calibration score, i.e. below 1 / n."""
    if value is None:
        return ""
    if value == 0 and n_calibration:
        return f"< {1 / n_calibration:.2g}"
    return fmt(float(value))


def _cut(text, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit] + " ..."


# ------------------------------------------------------------------------ anomalies
def _anomalies(model: ModelFacts, scores: ScoreFacts, loader: _ModelLoader) -> page.Section:
    top = scores.top
    if top.num_rows == 0:
        return page.Section("anomalies", "Top anomalies", page.note("No scored records."))
    k = sum(1 for name in top.schema.names if name.startswith("top_feature_"))
    base = {"record_id", *scores.scores, *(f"top_feature_{i}" for i in range(1, k + 1))}
    base |= {f"top_contribution_{i}" for i in range(1, k + 1)}
    extra = [n for n in top.schema.names if n not in base]
    rows, n_cal = [], len(model.bundle.calibration_scores)
    for i, row in enumerate(top.to_pylist(), start=1):
        features = "; ".join(
            f"{row[f'top_feature_{j}']} ({fmt(row[f'top_contribution_{j}'])})"
            for j in range(1, k + 1)
            if row.get(f"top_feature_{j}") is not None
        )
        rows.append(
            [i, _cut_left(row["record_id"], 60), float(row["score"]), _p(row["p_value"], n_cal),
             "yes" if row["is_anomaly"] else "no", features, *[row[n] for n in extra]]
        )  # fmt: skip
    headers = ["#", "record", "score", "p-value", "flagged", "top features (contribution, nats)"]
    body = page.note(
        "The highest scores of the batch. A feature's contribution is its reconstruction NLL "
        "minus its median on the calibration split: how much worse than usual the model "
        "explains it for this record."
    ) + page.table(headers + extra, rows)
    if model.kind == "image":
        body += _image_pairs(model, scores, loader)
    return page.Section("anomalies", "Top anomalies", body)


def _image_pairs(model: ModelFacts, scores: ScoreFacts, loader: _ModelLoader) -> str:
    """Each top anomaly's input beside the image decoded from its code (top patch outlined)."""
    from pipeline.sources.images import ImageRejected, decode_image

    n = min(TOP_IMAGES, scores.top.num_rows)
    codes = scores.top_codes[:n]
    keep = ~np.isnan(codes).any(axis=1) if codes.size else np.zeros(n, bool)
    decoded = {}
    if keep.any():
        values = np.asarray(loader.get().reconstruct_from_code(codes[keep]))
        frames = model.bundle.encoding.decode(values)["pixels"]
        decoded = dict(zip(np.flatnonzero(keep), frames, strict=False))
    cells = []
    for i, row in enumerate(scores.top.slice(0, n).to_pylist()):
        patch = _patch(row.get("top_feature_1"))
        data = read_bytes_or_none(row["record_id"])
        pair = []
        try:
            if data is not None:
                pixels = decode_image(data, model.config.image).pixels
                pair.append(page.image(pixels, f"#{i + 1} input", patch))
        except ImageRejected:
            pass
        if i in decoded:
            pair.append(page.image(decoded[i], "decoded", patch))
        cells.append(f'<div style="margin:0 14px 10px 0">{"".join(pair)}</div>')
    return (
        "<h3>Inputs and their reconstructions</h3>"
        + page.note(
            "Left: the input file; right: the image decoded from its code. The red box "
            "is the patch that contributed most to the score."
        )  # fmt: skip
        + '<div class="thumbs">'
        + "".join(cells)
        + "</div>"
    )


def _patch(name: str | None) -> tuple[int, int, int, int] | None:
    """`"y7:14 x0:7"` -> (7, 14, 0, 7); None when the name is not a patch."""
    try:
        ys, xs = name.split()
        y0, y1 = (int(v) for v in ys[1:].split(":"))
        x0, x1 = (int(v) for v in xs[1:].split(":"))
        return y0, y1, x0, x1
    except (AttributeError, ValueError):
        return None


# --------------------------------------------------------------------------- latent
def _latent(scores: ScoreFacts) -> page.Section:
    codes = scores.sample_codes
    found = ~np.isnan(codes).any(axis=1) if codes.size else np.zeros(0, bool)
    if codes.shape[1] < 2 or found.sum() < 3:
        return page.Section("latent", "Latent space", page.note("Not enough codes to map."))
    z = codes[found]
    index = scores.sample_index[found]
    centred = z - z.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    explained = singular**2 / max(float(np.sum(singular**2)), 1e-12)
    score = scores.scores["score"][index].astype(float)
    flagged = scores.scores["is_anomaly"][index].astype(bool)
    chart = charts.scatter_chart(
        xy[:, 0], xy[:, 1], _rank(score),
        f"Codes of {len(z):,} records (first two principal directions)",
        f"PC 1 ({explained[0]:.0%} of the variance)", f"PC 2 ({explained[1]:.0%})",
        "score percentile", highlight=flagged,
    )  # fmt: skip
    body = page.note(
        f"The dequantised posterior means ({scores.code_dtype} codes) of a random sample of "
        f"the batch, projected on their first two principal directions and coloured by the "
        "score's percentile; flagged records are ringed in red."
    ) + page.grid(chart)
    return page.Section("latent", "Latent space", body)


def _rank(values: np.ndarray) -> np.ndarray:
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return 100.0 * order / max(len(values) - 1, 1)


# ---------------------------------------------------------------------------- drift
def _drift(scores: ScoreFacts) -> page.Section:
    report = scores.validation
    if not report:
        return page.Section("drift", "Drift", page.note("No validation report in this output."))
    rows = sorted(report.get("drift", []), key=lambda r: -r["value"] / (r["threshold"] or 1))
    body = ""
    if rows:
        labels = [f"{r['feature']} ({'JS' if r['measure'].startswith('jensen') else 'L-inf'})"
                  for r in rows]  # fmt: skip
        body += page.grid(
            charts.bar_chart(
                labels,
                {"distance to the training statistics": [r["value"] for r in rows]},
                "Per-feature drift against its threshold",
                "Jensen-Shannon divergence (numbers) / L-infinity distance (categories)",
                limits=[r["threshold"] for r in rows],
                limit_label="threshold (tick); red: drifted",
            )
        )
        drifted = [r["feature"] for r in rows if r["drifted"]]
        body += page.banner(
            f"Drifted: {', '.join(drifted)}" if drifted else "No feature drifted.", bool(drifted)
        )
    anomalies = report.get("schema_anomalies", [])
    body += "<h3>Schema anomalies</h3>" + (
        page.table(["anomaly"], [[_cut(a, 300)] for a in anomalies])
        if anomalies
        else page.note("None: the batch fits the training schema.")
    )
    return page.Section("drift", "Drift", body)


# ---------------------------------------------------------------------- code length
def _code_length(model: ModelFacts, scores: ScoreFacts | None) -> page.Section:
    history, rows = model.history, []
    kept = kept_epoch(history, model.config.model.kl_warmup_epochs)
    if kept and "val_kl" in history:
        kl, recon = history["val_kl"][kept - 1], history["val_reconstruction_nll"][kept - 1]
        rows.append(["validation split (epoch kept, one posterior draw)", kl / LOG2, recon / LOG2,
                     (kl + recon) / LOG2])  # fmt: skip
    if scores is not None:
        kl, recon = scores.means["kl"], scores.means["reconstruction_nll"]  # every row
        rows.append(
            ["this batch (mean, scoring terms)", kl / LOG2, recon / LOG2, (kl + recon) / LOG2]
        )
    latent = len(model.bundle.calibration.code_scale)
    body = page.note(
        "The negative ELBO is a code length: rate (the KL term, bits to send the code) plus "
        "distortion (the reconstruction NLL, bits to send the record given the code). "
        "Converted from nats (1 bit = ln 2 nats). Numbers are continuous, so their NLL is a "
        "density: the distortion can be negative and is relative to the encoding's units."
    )
    body += page.table(["where", "rate (KL), bits", "distortion (NLL), bits", "total, bits"], rows)
    charts_html = []
    if rows:
        charts_html.append(
            charts.bar_chart(
                [r[0].split(" (")[0] for r in rows],
                {"rate (KL)": [r[1] for r in rows],
                 "distortion (NLL)": [max(r[2], 0) for r in rows]},
                "Bits per record: rate and distortion",
                "bits",
            )
        )  # fmt: skip
    variance = scores.code_variance if scores is not None else np.zeros(0)
    if variance.size:
        active = int(np.sum(variance > ACTIVE_VARIANCE))
        body += page.kpis(
            [
                ("latent dimensions", str(latent), ""),
                (f"in use (posterior-mean variance > {ACTIVE_VARIANCE})", str(active), ""),
            ]
        )
        charts_html.append(
            charts.bar_chart(
                [f"z{i}" for i in range(len(variance))],
                {"variance of the posterior mean over the batch": variance},
                "Latent dimensions in use",
                "variance (a dimension the decoder ignores stays near 0)",
                limits=[ACTIVE_VARIANCE] * len(variance),
                limit_label=f"in use above {ACTIVE_VARIANCE} (tick)",
                beyond=PALETTE[0],
                within=GREY,
            )
        )
    else:
        body += page.kpis([("latent dimensions", str(latent), "")])
    return page.Section("code", "Code length", body + page.grid(*charts_html))


# -------------------------------------------------------------------------- samples
def _samples(model: ModelFacts, loader, samples_dir, rows: int, seed: int) -> page.Section | None:
    if samples_dir is None and rows <= 0:
        return None
    encoding = model.bundle.encoding
    if model.kind == "image":
        pixels = _image_samples(model, loader, samples_dir, seed)
        thumbs = "".join(page.image(p, f"sample {i + 1}") for i, p in enumerate(pixels))
        where = f"read from {samples_dir}" if samples_dir else "drawn now"
        body = (
            page.note(
                f"Images decoded from codes drawn from the prior N(0, I) ({where}): the mean "
                "intensity the decoder predicts per pixel."
            )
            + f'<div class="thumbs">{thumbs}</div>'
        )
        return page.Section("samples", "Samples from the model", body)
    frame = _table_samples(model, loader, samples_dir, rows, seed)
    features = [c for c in encoding.columns if c in frame.columns][:MAX_MARGINALS]
    integer = {
        s.name: list(s.vocabulary) for s in getattr(encoding, "categorical", ()) if s.integer
    }
    marginals = training_marginals(model.bundle.statistics, features, integer)
    chart_list, off = [], []
    for name in features:
        marginal = marginals.get(name)
        if marginal is None:
            continue
        shares, outside = marginal.sample_shares(frame[name].tolist())
        off.append([name, outside])
        chart_list.append(
            charts.histogram_chart(
                [
                    Histogram("training", np.arange(len(shares) + 1), marginal.shares, GREY, True),
                    Histogram("samples", np.arange(len(shares) + 1), shares, PALETTE[3]),
                ],
                f"{name}: samples against training",
                "training quantile bins" if marginal.edges is not None else "category",
                "share of records",
                x_labels=marginal.labels,
            )
        )
    where = f"read from {samples_dir}" if samples_dir else f"{len(frame):,} drawn now, seed {seed}"
    body = page.note(
        f"Records decoded from codes drawn from the prior N(0, I) ({where}), against the "
        "training data's marginals (from the bundle's TFDV statistics: quantile bins for "
        "numbers, frequencies for categories). Each record is drawn from the decoder's "
        "likelihood p(x | z) for its code."
    ) + page.grid(*chart_list)
    body += page.table(["feature", "share of samples outside the training bins"], off)
    return page.Section("samples", "Samples from the model", body)


def _table_samples(model: ModelFacts, loader, samples_dir, rows: int, seed: int):
    if samples_dir is not None:
        table = read_parquet(samples_dir)
        if table is None:
            raise FileNotFoundError(f"no Parquet samples under {samples_dir}")
        return table.slice(0, max(rows, 1) * 50).to_pandas()
    values = decoded_prior(loader.get(), rows, seed)
    return model.bundle.encoding.decode(values)


def _image_samples(model: ModelFacts, loader, samples_dir, seed: int) -> list[np.ndarray]:
    if samples_dir is not None:
        index = read_parquet(os.path.join(samples_dir, "index"))
        paths = [] if index is None else index.column("image").to_pylist()[:SAMPLE_IMAGES]
        from pipeline.sources.images import decode_image

        out = []
        for path in paths:
            data = read_bytes_or_none(path)
            if data is not None:
                out.append(decode_image(data, model.config.image).pixels)
        return out
    values = decoded_prior(loader.get(), SAMPLE_IMAGES, seed, likely=True)
    return list(model.bundle.encoding.decode(values)["pixels"])
