"""vaepipe from Python: fit a VAE anomaly detector on a DataFrame, score, encode and decode
records, save and load the same model bundle the command line uses.

    import vaepipe
    det = vaepipe.fit(df, id_column="id")      # a DataFrame or a path; any config key
    flags = det.score(df2)                     # the columns of flags/
    codes = det.encode(df2); records = det.decode(codes)
    det.save("model/"); det = vaepipe.load("model/")
    det.threshold_, det.decision_function(df2), det.predict(df2)

Importing this package imports nothing heavy; TensorFlow, TFDV and Keras load on first use.
"""

from __future__ import annotations

import os
from typing import Any

from vaepipe.detector import BadRecordError, Data, Detector

__all__ = ["BadRecordError", "Detector", "fit", "load"]


def fit(data: Data, config: Any = None, **settings: Any) -> Detector:
    """A Detector trained on `data` (see `Detector` for `config` and the settings)."""
    return Detector(config, **settings).fit(data)


def load(path: str | os.PathLike, **settings: Any) -> Detector:
    """The Detector of a saved model bundle (`Detector.save` or `vaepipe train`)."""
    return Detector.load(path, **settings)
