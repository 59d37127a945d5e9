"""The development corpus of benchmarks/corpus.py: its 43 sets, their fixed halves A and B, and
how each family is read and split.

Families (all under shared/data): `adbench` (14 ADBench Classical .npz), `embeddings` (22
ADBench CV/NLP embedding .npz, 512/768 columns), `categorical` (6 all-nominal CSVs with a
`label` column) and `nsl-kdd` (mixed types, normal-only training: nsl_kdd.py's protocol).

The halves were drawn once (numpy RandomState(2024), a shuffle within each family, and within
the embeddings within CIFAR10 / SVHN / MVTec-AD / BERT) and are written out below, so that they
never move: a default is changed only when it helps on both halves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pandas as pd
from common import SHARED_DATA
from sklearn.model_selection import train_test_split

MAX_ROWS = 10_000  # ADBench: sets over 10,000 rows are subsampled (seeded) to 10,000
TEST_FRACTION = 0.3
LABEL = "label"
ID = "id"
NSL_KDD = "NSL-KDD"
NSL_KDD_EXCLUDE = ["label", "difficulty"]
NSL_KDD_CATEGORICAL = ["protocol_type", "service", "flag"]

FAMILY_DIRS = {
    "adbench": SHARED_DATA / "adbench",
    "embeddings": SHARED_DATA / "adbench_embeddings",
    "categorical": SHARED_DATA / "categorical",
    "nsl-kdd": SHARED_DATA / "nsl_kdd",
}

HALF_A = (
    # adbench (7)
    "2_annthyroid", "6_cardio", "26_optdigits", "29_Pima", "30_satellite", "40_vowels", "42_WBC",
    # embeddings (11)
    "CV_by_ResNet18__CIFAR10_0", "CV_by_ResNet18__SVHN_8", "NLP_by_BERT__20news_3",
    "CV_by_ResNet18__MVTec-AD_cable", "CV_by_ResNet18__MVTec-AD_capsule",
    "CV_by_ResNet18__MVTec-AD_carpet", "CV_by_ResNet18__MVTec-AD_grid",
    "CV_by_ResNet18__MVTec-AD_screw", "CV_by_ResNet18__MVTec-AD_tile",
    "CV_by_ResNet18__MVTec-AD_wood", "CV_by_ResNet18__MVTec-AD_zipper",
    # categorical (3)
    "AID362red_train_allpossiblenominal", "chess_krkopt_zerovsall", "cmc-nominal",
    # mixed (1)
    NSL_KDD,
)  # fmt: skip
HALF_B = (
    # adbench (7)
    "4_breastw", "18_Ionosphere", "20_letter", "23_mammography", "28_pendigits", "32_shuttle",
    "38_thyroid",
    # embeddings (11)
    "CV_by_ResNet18__CIFAR10_4", "CV_by_ResNet18__CIFAR10_6", "CV_by_ResNet18__SVHN_0",
    "CV_by_ResNet18__SVHN_9", "CV_by_ResNet18__MVTec-AD_bottle",
    "CV_by_ResNet18__MVTec-AD_hazelnut", "CV_by_ResNet18__MVTec-AD_leather",
    "CV_by_ResNet18__MVTec-AD_metal_nut", "CV_by_ResNet18__MVTec-AD_pill",
    "CV_by_ResNet18__MVTec-AD_toothbrush", "CV_by_ResNet18__MVTec-AD_transistor",
    # categorical (3)
    "Reuters-corn-100", "bank-additional-ful-nominal", "solar-flare_FvsAll-cleaned",
)  # fmt: skip


@dataclass
class Split:
    """One (set, seed): vaepipe's frames and what the peers and the report need."""

    train: pd.DataFrame  # `id`, the features, and the excluded columns
    test: pd.DataFrame
    y_test: np.ndarray
    features: list[str]
    categorical: list[str] = field(default_factory=list)  # features the peers one-hot
    exclude: list[str] = field(default_factory=list)  # carried, not modelled (labels)
    force_categorical: bool = False  # tell vaepipe data.categorical_columns = `categorical`


@dataclass(frozen=True)
class CorpusSet:
    name: str  # the file stem (or NSL-KDD)
    family: str
    path: Path

    @property
    def half(self) -> str:
        return "A" if self.name in HALF_A else "B"

    @property
    def short(self) -> str:
        """The name in tables: embedding prefixes dropped."""
        return self.name.split("__", 1)[-1]

    def split(self, seed: int, max_rows: int, embedding_rows: int = MAX_ROWS) -> Split:
        if self.family == "embeddings":  # 512/768 columns: the costliest sets per row
            return _npz_split(self.path, seed, min(max_rows, embedding_rows))
        if self.family == "adbench":
            return _npz_split(self.path, seed, max_rows)
        if self.family == "categorical":
            return _categorical_split(self.path, seed, max_rows)
        return _nsl_kdd_split(self.path, seed)


def corpus(wanted: list[str] | None = None, half: str | None = None) -> list[CorpusSet]:
    """Every set under shared/data (A and B alternately, in the lists' order), filtered by
    names (exact stems, else substrings) and by half."""
    found = {}
    for family, folder in FAMILY_DIRS.items():
        if family == "nsl-kdd":
            if (folder / "KDDTrain+_20Percent.txt").exists():
                found[NSL_KDD] = CorpusSet(NSL_KDD, family, folder)
            continue
        pattern = "*.csv" if family == "categorical" else "*.npz"
        for path in sorted(folder.glob(pattern)):
            found[path.stem] = CorpusSet(path.stem, family, path)
    unlisted = set(found) - set(HALF_A) - set(HALF_B)
    if unlisted:
        raise SystemExit(f"sets in no half (add them to corpus_sets.py): {sorted(unlisted)}")
    # A and B interleaved: a run stopped part-way has covered both halves alike.
    order = [n for pair in zip_longest(HALF_A, HALF_B) for n in pair if n]
    sets = [found[n] for n in order if n in found]
    if half:
        sets = [s for s in sets if s.half == half]
    if wanted:
        names = {s.name for s in sets}
        sets = [s for s in sets if any(s.name == w or (w not in names and w in s.name)
                                       for w in wanted)]  # fmt: skip
    return sets


def _capped_split(
    frame: pd.DataFrame, y: np.ndarray, seed: int, max_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """ADBench's protocol: a seeded subsample to `max_rows`, a stratified 70/30 split."""
    if len(y) > max_rows:
        keep = np.random.RandomState(seed).choice(len(y), max_rows, replace=False)
        frame, y = frame.iloc[keep], y[keep]
    train, test, _, y_test = train_test_split(
        frame, y, test_size=TEST_FRACTION, shuffle=True, stratify=y, random_state=seed
    )
    return train.reset_index(drop=True), test.reset_index(drop=True), y_test


def _with_ids(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = train.copy()
    test = test.copy()
    train.insert(0, ID, np.arange(len(train)))
    test.insert(0, ID, np.arange(len(test)) + len(train))
    return train, test


def _npz_split(path: Path, seed: int, max_rows: int) -> Split:
    data = np.load(path)
    x, y = data["X"], data["y"].astype(int)
    features = [f"f{j}" for j in range(x.shape[1])]
    train, test, y_test = _capped_split(pd.DataFrame(x, columns=features), y, seed, max_rows)
    train, test = _with_ids(train, test)
    return Split(train, test, y_test, features)


def _categorical_split(path: Path, seed: int, max_rows: int) -> Split:
    # Integer-coded nominal attributes stay integers (as a user's file has them); the sets are
    # all-nominal, so vaepipe is told so (data.categorical_columns), as the peers are (one-hot).
    frame = pd.read_csv(path)
    y = frame[LABEL].to_numpy().astype(int)
    features = [c for c in frame.columns if c != LABEL]
    train, test, y_test = _capped_split(frame, y, seed, max_rows)
    train, test = _with_ids(train, test)
    return Split(train, test, y_test, features, features, [LABEL], force_categorical=True)


def _nsl_kdd_split(folder: Path, seed: int) -> Split:
    """nsl_kdd.py's protocol: fit on 70% of the normal rows; score the other normal rows and
    every attack row."""
    import nsl_kdd

    train, test = nsl_kdd.split(nsl_kdd.load(folder), seed)
    y_test = (test.label != "normal").to_numpy().astype(int)
    features = [c for c in train.columns if c not in (ID, *NSL_KDD_EXCLUDE)]
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    return Split(train, test, y_test, features, list(NSL_KDD_CATEGORICAL), list(NSL_KDD_EXCLUDE))
