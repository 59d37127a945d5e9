"""`Detector`: fit, score, encode, decode and save vaepipe models from Python.

Tables in a DataFrame (or a CSV/Parquet/TFRecord path) are read, typed, encoded and scored in
this process by the same stages as the command line's Beam jobs, so the same bundle scores the
same records identically here and in `vaepipe score`. The bundle is the one the command line
writes and reads, with the same checks. Image folders train through the Beam job.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from vaepipe.settings import overrides

Data = pd.DataFrame | str | os.PathLike
ON_BAD_ROWS = ("raise", "dead_letter")


class BadRecordError(ValueError):
    """A record could not be read, typed or scored (`on_bad_rows="raise"`).

    Attributes:
      dead_letters: every rejected record as a DataFrame (the columns of `dead_letter/`).
    """

    def __init__(self, dead_letters: pd.DataFrame):
        first = dead_letters.iloc[0]
        field = f", field {first['field']!r}" if first["field"] else ""
        more = len(dead_letters) - 1
        super().__init__(
            f"record {first['record_id']}{field}: {first['reason']}: {first['message']}"
            + (f" (and {more} more bad records; on_bad_rows='dead_letter' keeps them in "
               "Detector.dead_letters_ and scores the rest)" if more else
               " (on_bad_rows='dead_letter' keeps it in Detector.dead_letters_ instead)")
        )  # fmt: skip
        self.dead_letters = dead_letters


class Detector:
    """A VAE anomaly detector and compressor for tables (PyOD / scikit-learn conventions).

    Args:
      config: config file(s) applied on the built-in tabular config, as `--config` does.
      on_bad_rows: "raise" (a BadRecordError naming the record, field and reason) or
        "dead_letter" (bad records are left out of the result and kept in `dead_letters_`).
      settings: `{"section.key": value}` overrides; keyword arguments do the same
        (`latent_dim=4`, `id_column="id"`, `train__batch_size=128`).

    Fitted attributes: `threshold_` (score above which a record is flagged), `model_dir_`
    (the bundle), `config_`, `history_` (per-epoch ELBO terms), `dead_letters_`.
    """

    def __init__(
        self,
        config: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        *,
        on_bad_rows: str = "raise",
        settings: Mapping[str, Any] | None = None,
        **keywords: Any,
    ):
        if on_bad_rows not in ON_BAD_ROWS:
            raise ValueError(f"on_bad_rows must be one of {ON_BAD_ROWS}. Received: {on_bad_rows!r}")
        files = [config] if isinstance(config, str | os.PathLike) else list(config or [])
        self._files = [os.fspath(f) for f in files]
        self._overrides = overrides({**(settings or {}), **keywords})
        self.on_bad_rows = on_bad_rows
        self._bundle = None
        self._temporary: str | None = None
        self.dead_letters_ = pd.DataFrame()

    # ---------------------------------------------------------------------------- fitting

    def fit(self, data: Data, y: Any = None) -> Detector:
        """Train on `data` (normal records, or mostly normal) and calibrate; returns self.

        `y` is ignored (unsupervised; scikit-learn's signature).
        """
        _quiet()
        from pipeline.jobs import in_process
        from pipeline.jobs.settings import training_config
        from pipeline.jobs.train import train

        config = training_config(self._files, self._overrides)
        out = self._fresh_bundle_dir()
        if config.data.kind == "tabular":
            prepared_echo = _silent
            result = in_process.train(data, out, config, echo=prepared_echo)
        else:
            result = train(os.fspath(data), out, config, echo=_silent)
        self._load(out)
        self.history_ = result.history
        return self

    @property
    def threshold_(self) -> float:
        return float(self._loaded().calibration.threshold)

    @property
    def model_dir_(self) -> str:
        return self._loaded().directory

    @property
    def config_(self):
        return self._config

    # ---------------------------------------------------------------------------- scoring

    def score(self, data: Data) -> pd.DataFrame:
        """The flags of each record: the columns of `vaepipe score`'s `flags/` (record_id,
        score, reconstruction_nll, kl, p_value, is_anomaly, top features, excluded columns)."""
        return self._scored(data).flags.to_pandas()

    def decision_function(self, data: Data) -> np.ndarray:
        """Anomaly scores (negative ELBO, nats): higher is more anomalous."""
        return self.score(data)["score"].to_numpy()

    def predict(self, data: Data) -> np.ndarray:
        """1 for records scored above `threshold_` (flagged), else 0."""
        return self.score(data)["is_anomaly"].to_numpy().astype(int)

    def encode(self, data: Data) -> pd.DataFrame:
        """Latent codes: `record_id`, `code` (int8 steps per dimension, as `codes/` holds)."""
        return self._scored(data).codes.to_pandas()

    def decode(self, codes: pd.DataFrame) -> pd.DataFrame:
        """Records rebuilt from codes (`encode`'s output), in the original columns."""
        from pipeline import kinds
        from pipeline.jobs.decode import decode_codes
        from pipeline.scoring.outputs import OutputContext

        bundle = self._loaded(model=True)
        schema = OutputContext.from_bundle(bundle, self._config).codes_schema
        table = pa.Table.from_pandas(codes[["record_id", "code"]], schema=schema)
        values = decode_codes(bundle.model, table)
        kind = kinds.get(self._config.data.kind)
        ids = table.column("record_id").to_pylist()
        decoded = kind.decoded_table(
            bundle.encoding, ids, values, self._temp_dir(), columns=bundle.columns
        )
        return decoded.to_pandas()

    def compress(self, data: Data, **settings: Any):
        """An error-bounded archive of the records (`vaepipe compress`); `settings` are compress
        keys (`relative_tolerance=0.01`, ...), lossless by default. Returns an Archive
        (`.save(path)`)."""
        from dataclasses import replace

        from pipeline.archive.api import compress_frame

        chosen = replace(self._config.compress, **settings)
        chosen.validate()
        archive = compress_frame(self._loaded(model=True), data, self._config, chosen)
        self.dead_letters_ = _dead_frame(archive.dead_letters)
        if len(self.dead_letters_) and self.on_bad_rows == "raise":
            raise BadRecordError(self.dead_letters_)
        return archive

    def decompress(self, archive: Any) -> pd.DataFrame:
        """The records of an Archive or an archive folder, in the original columns and order."""
        from pipeline.archive.api import Archive, decompress_archive, load_archive

        if not isinstance(archive, Archive):
            archive = load_archive(os.fspath(archive))
        return decompress_archive(self._loaded(model=True), archive, self._config)

    # ---------------------------------------------------------------------------- bundles

    def save(self, path: str | os.PathLike) -> str:
        """Copy the model bundle to `path` (a folder; local or gs://); returns the path."""
        from pipeline.artifacts.bundle import MANIFEST_FILE
        from pipeline.core.fs import read_bytes, write_bytes

        bundle = self._loaded()
        source, target = bundle.directory, os.fspath(path)
        # Every part the manifest hashes, then the manifest: it marks a whole bundle.
        for name in (*bundle.manifest["sha256"], MANIFEST_FILE):
            write_bytes(os.path.join(target, name), read_bytes(os.path.join(source, name)))
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, **keywords: Any) -> Detector:
        """The detector of a saved bundle (checked as `vaepipe score` checks it)."""
        detector = cls(**keywords)
        detector._load(os.fspath(path))
        return detector

    def __repr__(self) -> str:
        where = self._bundle.directory if self._bundle is not None else "not fitted"
        return f"Detector({where})"

    # ---------------------------------------------------------------------------- internals

    def _scored(self, data: Data):
        from pipeline.jobs import in_process

        scored = in_process.score(self._loaded(model=True), data, self._config)
        self.dead_letters_ = _dead_frame(scored.dead)
        if len(self.dead_letters_) and self.on_bad_rows == "raise":
            raise BadRecordError(self.dead_letters_)
        return scored

    def _load(self, directory: str) -> None:
        _quiet()
        from pipeline.artifacts.bundle import load_bundle
        from pipeline.jobs.settings import model_config

        self._bundle = load_bundle(directory, load_model=False)
        self._config = model_config(directory, (), self._overrides)

    def _loaded(self, model: bool = False):
        if self._bundle is None:
            raise RuntimeError("this Detector is not fitted: call fit(data) or vaepipe.load(path)")
        if model and self._bundle.model is None:
            from pipeline.artifacts.bundle import load_bundle

            self._bundle = load_bundle(self._bundle.directory)
        return self._bundle

    def _fresh_bundle_dir(self) -> str:
        return os.path.join(self._temp_dir(), "bundle")

    def _temp_dir(self) -> str:
        if self._temporary is None:
            self._temporary = tempfile.mkdtemp(prefix="vaepipe-")
        return self._temporary

    def __del__(self) -> None:
        if getattr(self, "_temporary", None):
            shutil.rmtree(self._temporary, ignore_errors=True)


def _dead_frame(letters) -> pd.DataFrame:
    from pipeline.core.records import DEAD_LETTER_COLUMNS

    return pd.DataFrame([d.as_row() for d in letters], columns=list(DEAD_LETTER_COLUMNS))


def _quiet() -> None:
    from pipeline.cli.console import quiet_libraries

    quiet_libraries()


def _silent(_: str) -> None:
    pass
