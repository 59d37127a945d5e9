"""Validation of a scoring batch: schema anomalies (TFDV), drift, and flag-rate alarms.

The batch's statistics are computed on a branch of the scoring pipeline and checked against
the model's schema. `vaepipe score` computes them on a deterministic sample of each chunk's rows
(`schema.validation_sample_rate`, with a floor of `schema.validation_min_rows` rows per chunk;
see `features.statistics.RowSample` for what a sample can miss); `vaepipe validate` on every
row. The batch's counts per training-quantile bin (or category) are compared with the training
data's (`features.drift`, always on every row: they are cheap). Both go to
`validation_report.json`; the driver reads it back and decides, by config, whether the job
warns or fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from scipy.stats import fisher_exact

from configs import VaepipeConfig
from pipeline.core.fs import read_text, write_bytes, write_text
from pipeline.features.drift import (
    SumCounts,
    count_chunk,
    drift_rows,
    reference_counts,
    references,
)
from pipeline.features.statistics import (
    ComputeStatistics,
    RowSample,
    anomaly_lines,
    stats_options,
    validate,
)

VALIDATION_REPORT = "validation_report.json"
STATISTICS = "statistics.pb"


@dataclass(frozen=True)
class ValidationReport:
    """What TFDV found in a batch: schema anomalies and per-feature drift measurements."""

    schema_anomalies: list[str] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)

    @property
    def drifted(self) -> list[dict]:
        return [row for row in self.drift if row["drifted"]]

    def failures(self, config: VaepipeConfig) -> list[str]:
        """The problems that fail the job under this config (empty: warn only)."""
        out = []
        if config.schema.on_anomaly == "fail":
            out += [f"schema anomaly: {line}" for line in self.schema_anomalies]
        if config.schema.on_drift == "fail":
            out += [_drift_line(row) for row in self.drifted]
        return out

    def warnings(self, max_chars: int = 300) -> list[str]:
        """Readable lines for logs, each cut to `max_chars` (values can be huge)."""
        lines = [f"schema anomaly: {line}" for line in self.schema_anomalies]
        lines += [_drift_line(row) for row in self.drifted]
        return [line if len(line) <= max_chars else line[:max_chars] + " ..." for line in lines]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _drift_line(row: dict) -> str:
    tested = f", G-test p = {row['p_value']:.1e} on {row['rows']} rows" if "p_value" in row else ""
    return (
        f"drift: {row['feature']} {row['measure']} = {row['value']:.4f} "
        f"(threshold {row['threshold']}{tested})"
    )


class ValidateBatch(beam.PTransform):
    """Typed chunks -> TFDV statistics, checked against the schema and training statistics.

    Writes `validation_report.json` (and the statistics, if `write_statistics`) to `out_dir`
    and returns the statistics. The schema check sees the rows `schema.validation_sample_rate`
    and `schema.validation_min_rows` keep of each chunk, or every row with `sample_rate=1.0`
    (`vaepipe validate`: a full check); drift counts every row either way.
    """

    def __init__(
        self,
        bundle,
        config: VaepipeConfig,
        out_dir: str,
        write_statistics: bool = False,
        sample_rate: float | None = None,
    ):
        super().__init__()
        kinds = bundle.encoding.kinds
        s = config.schema
        # Batch statistics must be computed as the training statistics were: with the schema
        # only if a curated one was given.
        curated = s.schema_file is not None
        self._kinds = kinds
        self._schema = bundle.schema
        refs = references(bundle.statistics)
        self._refs = {name: ref for name, ref in refs.items() if name in kinds}
        self._reference = reference_counts(bundle.statistics, self._refs)
        self._drift_settings = (s.drift_js_threshold, s.drift_linf_threshold, s.drift_p_value)
        self._options = stats_options(s.max_vocabulary, bundle.schema if curated else None)
        rate = s.validation_sample_rate if sample_rate is None else sample_rate
        self._sample = RowSample(rate, s.validation_min_rows)
        self._out_dir = out_dir
        self._write_statistics = write_statistics

    def expand(self, typed):
        stats = typed | "BatchStatistics" >> ComputeStatistics(
            self._kinds, self._options, self._sample
        )
        drift = (
            typed
            | "DriftCounts" >> beam.Map(count_chunk, self._refs)
            | "SumDriftCounts" >> beam.CombineGlobally(SumCounts())
            | "Drift"
            >> beam.Map(
                lambda counts, refs, ref, settings: drift_rows(refs, ref, counts, *settings),
                self._refs,
                self._reference,
                self._drift_settings,
            )
        )
        _ = (
            stats
            | "Validate" >> beam.Map(_report, self._schema, beam.pvalue.AsSingleton(drift))
            | "WriteReport"
            >> beam.Map(lambda r, p: write_text(p, r.to_json()), self._path(VALIDATION_REPORT))
        )
        if self._write_statistics:
            _ = stats | "WriteStatistics" >> beam.Map(
                lambda st, p: write_bytes(p, st.SerializeToString()), self._path(STATISTICS)
            )
        return stats

    def _path(self, name: str) -> str:
        return os.path.join(self._out_dir, name)


def _report(stats, schema, drift: list[dict]) -> ValidationReport:
    return ValidationReport(anomaly_lines(validate(stats, schema)), drift)


def read_report(out_dir: str) -> ValidationReport:
    """The report a ValidateBatch wrote (an empty one if the batch had no valid rows)."""
    path = os.path.join(out_dir, VALIDATION_REPORT)
    if not FileSystems.exists(path):
        return ValidationReport()
    return ValidationReport(**json.loads(read_text(path)))


def flag_rate_alarm(
    flagged: int, scored: int, calibration_flagged: int, calibration_total: int, alarm_p: float
) -> str | None:
    """A message when a batch flags improbably more records than the calibration data did.

    One-sided Fisher exact test of the batch's flag count against the calibration split's
    (which set the threshold): unlike a binomial test against target_fpr, it allows for the
    uncertainty of a threshold estimated from a finite calibration sample.
    """
    if scored == 0 or calibration_total == 0:
        return None
    table = [
        [flagged, scored - flagged],
        [calibration_flagged, calibration_total - calibration_flagged],
    ]
    p_value = float(fisher_exact(table, alternative="greater")[1])
    if p_value >= alarm_p:
        return None
    expected = calibration_flagged / calibration_total
    return (
        f"flag rate {flagged / scored:.2%} ({flagged} of {scored}) is far above the "
        f"{expected:.2%} of the calibration data (Fisher exact p = {p_value:.1e}): the batch "
        "has likely drifted from the training data, or holds many anomalies"
    )
