"""The sweep page: the rate-distortion curve of the bundles a sweep trained, the ELBO beside
the importance-weighted bound, and the AUROC of each when labels were given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.core.fs import write_text
from pipeline.report.charts import bar_chart, line_chart
from pipeline.report.page import Section, grid, note, render, table


def write_sweep_page(key: str, points: Sequence[Any], output: str) -> str:
    """One self-contained HTML page for the sweep's `points` (`pipeline.jobs.sweep`)."""
    rate = [p.rate_bits for p in points]
    distortion = [p.distortion_bits for p in points]
    curve = line_chart(
        {"bundles": (rate, distortion)},
        "Rate against distortion (bits per record)",
        "rate: KL to the prior (bits)",
        "distortion: reconstruction NLL (bits)",
    )
    sections = [
        Section("rd", "Rate and distortion", grid(curve, _bounds(points)) + _note(key, points)),
        Section("table", "Per value", _table(key, points)),
    ]
    if all(p.auroc is not None for p in points):
        labels = [f"{key}={p.value}" for p in points]
        aurocs = {"AUROC": [p.auroc for p in points]}
        chart = bar_chart(labels, aurocs, "AUROC on the labelled records", "AUROC")
        sections.append(Section("auroc", "Detection", grid(chart)))
    html = render(f"vaepipe sweep: {key}", [f"{len(points)} bundles"], sections)
    write_text(output, html)
    return output


def _bounds(points) -> str:
    x = np.arange(len(points), dtype=float)
    return line_chart(
        {
            "ELBO": (x, [p.elbo_nats for p in points]),
            f"IWAE (K={points[0].iwae_samples})": (x, [p.iwae_nats for p in points]),
        },
        "Bounds on log p(x) per record (nats; higher is tighter)",
        "bundle (in the order of the values)",
        "nats",
        dashed=[f"IWAE (K={points[0].iwae_samples})"],
    )


def _note(key: str, points) -> str:
    order = ", ".join(f"{key}={p.value}" for p in points)
    return note(
        f"Each point is one bundle ({order}), measured on the same records: the rate is the "
        "code's cost (KL to the prior), the distortion the record's cost given its code; "
        "their sum is the negative ELBO in bits. The IWAE bound uses the same draws as the "
        "ELBO estimate and is never below it."
    )


def _table(key: str, points) -> str:
    headers = [key, "rate bits", "distortion bits", "total bits", "ELBO nats", "IWAE nats"]
    headers += ["AUROC"] if any(p.auroc is not None for p in points) else []
    rows = []
    for p in points:
        row = [p.value, p.rate_bits, p.distortion_bits, p.rate_bits + p.distortion_bits]
        row += [p.elbo_nats, p.iwae_nats]
        row += [p.auroc] if p.auroc is not None else []
        rows.append(row)
    return table(headers, rows)
