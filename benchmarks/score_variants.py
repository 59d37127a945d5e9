"""Other anomaly scores from the same fitted model, on the development corpus.

The product scores a record by its negative ELBO at the posterior mean (reconstruction NLL,
numeric variances widened by `model.score_tolerance`, plus the KL term). This script asks
whether another score *of the same model* ranks anomalies better, so that the comparison is
paired: one `vaepipe.fit` per (set, seed) with the defaults (corpus.py's split and settings),
then every variant on the test split's encoded rows:

- `elbo`: the product's score; `reconstruction` and `kl`: its two terms alone;
  `elbo_tolerance0`: the score without the tolerance; `elbo_mc8`: the likelihood averaged over
  8 fixed posterior draws instead of the mean;
- `iwae16`, `iwae64`: minus the importance-weighted bound on log p(x) with K draws (the
  scoring likelihood); `iwae64_trained`: the same with the trained variances (no tolerance);
- scores that weigh the latent term as much as the reconstruction, each term standardized on
  the calibration split's rows (no labels): `robust_z` (median and IQR), `fisher` (the sum of
  minus the log empirical p-values), `max_z` (the larger robust z).

    python benchmarks/score_variants.py --seeds 1 [--sets cardio NSL] [--half A]
        [--results score_variants.csv] [--resume]
    python benchmarks/score_variants.py --report-from score_variants.csv

The report gives each variant's mean AUROC per half, its change against `elbo` and the set
that loses most (the project's rule: a change must raise both halves and cost no set > 0.05).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import log, markdown
from corpus import base_settings
from corpus_sets import ID, MAX_ROWS, CorpusSet, Split, corpus
from sklearn.metrics import average_precision_score, roc_auc_score

BASE = "elbo"
MAX_DROP = 0.05


# ------------------------------------------------------------------------------ the model


def fitted(split: Split, seed: int):
    """The defaults' fit on the train split: (VAE, test rows, calibration rows), packed."""
    import vaepipe
    from pipeline.artifacts.shards import split_mask

    detector = vaepipe.fit(split.train, settings=base_settings(split, seed))
    bundle, config = detector._loaded(model=True), detector.config_
    test_ids, test_rows = packed(bundle, config, split.test)
    order = {int(record): i for i, record in enumerate(test_ids)}
    test_rows = test_rows[[order[r] for r in split.test[ID].to_numpy(np.int64)]]
    train_ids, train_rows = packed(bundle, config, split.train)
    calibration = train_rows[split_mask(train_ids, "calibration", config.train)]
    return bundle.scorer, test_rows, calibration


def packed(bundle, config, frame: pd.DataFrame) -> tuple[list, np.ndarray]:
    """Record ids (as the split hashes them) and the model's packed input rows of a
    DataFrame, typed and encoded as `vaepipe score` does."""
    from pipeline.features.encode import encode_chunk
    from pipeline.jobs.in_process import apply_kinds, frame_chunk

    exclude = tuple(config.data.exclude_columns)
    chunk, _ = frame_chunk(frame, config)
    typed, dead = apply_kinds(chunk, bundle.encoding.kinds, exclude)
    if dead:
        raise RuntimeError(f"{len(dead)} rows did not type: {dead[0]}")
    encoded = encode_chunk(typed, bundle.encoding, exclude)
    return list(encoded.record_ids), encoded.inputs


def terms(model, rows: np.ndarray, tolerance: float | None = None, mc: int = 0) -> dict:
    """`score_terms` as NumPy, with the scoring tolerance set to `tolerance` for the call."""
    import keras

    kept = model.score_tolerance
    model.score_tolerance = kept if tolerance is None else tolerance
    try:
        out = model.score_terms(rows, mc)
        return {k: np.asarray(keras.ops.convert_to_numpy(v), np.float64) for k, v in out.items()}
    finally:
        model.score_tolerance = kept


# ------------------------------------------------------------------------------ the scores


def robust_z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    q25, median, q75 = np.percentile(reference, [25, 50, 75])
    return (values - median) / max(q75 - q25, 1e-9)


def log_p(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Minus the log of the empirical upper-tail p-value ((count >= v) + 1) / (n + 1)."""
    reference = np.sort(reference)
    above = len(reference) - np.searchsorted(reference, values, side="left")
    return -np.log((above + 1.0) / (len(reference) + 1.0))


def variants(model, test: np.ndarray, calibration: np.ndarray) -> dict[str, np.ndarray]:
    base, cal = terms(model, test), terms(model, calibration)
    recon, kl = base["reconstruction_nll"], base["kl"]
    cal_recon, cal_kl = cal["reconstruction_nll"], cal["kl"]
    return {
        BASE: base["score"],
        "reconstruction": recon,
        "kl": kl,
        "elbo_tolerance0": terms(model, test, tolerance=0.0)["score"],
        "elbo_mc8": terms(model, test, mc=8)["score"],
        "iwae16": -model.iwae_bound(test, 16, scoring=True).astype(np.float64),
        "iwae64": -model.iwae_bound(test, 64, scoring=True).astype(np.float64),
        "iwae64_trained": -model.iwae_bound(test, 64, scoring=False).astype(np.float64),
        "robust_z": robust_z(recon, cal_recon) + robust_z(kl, cal_kl),
        "fisher": log_p(recon, cal_recon) + log_p(kl, cal_kl),
        "max_z": np.maximum(robust_z(recon, cal_recon), robust_z(kl, cal_kl)),
    }


# ------------------------------------------------------------------------------ runs


def run_set(item: CorpusSet, seed: int, embedding_rows: int) -> list[dict]:
    started = time.perf_counter()
    split = item.split(seed, MAX_ROWS, embedding_rows)
    scores = variants(*fitted(split, seed))
    seconds = time.perf_counter() - started
    return [
        {"set": item.short, "family": item.family, "half": item.half, "seed": seed,
         "variant": name, "auroc": roc_auc_score(split.y_test, values),
         "ap": average_precision_score(split.y_test, values), "seconds": seconds}
        for name, values in scores.items()
    ]  # fmt: skip


def report(results: pd.DataFrame) -> str:
    """Per variant and half: mean AUROC, change against `elbo`, worst set (set means over
    seeds, on the (set, seed) pairs every variant has)."""
    per_set = results.groupby(["half", "set", "variant"])["auroc"].mean().unstack("variant")
    lines = []
    for name in [v for v in per_set.columns if v != BASE]:
        row: dict[str, object] = {"variant": name}
        change = per_set[name] - per_set[BASE]
        for half in ("A", "B"):
            part = change.loc[half] if half in change.index.get_level_values(0) else None
            if part is None:
                continue
            row[f"mean AUROC {half}"] = round(float(per_set.loc[half, name].mean()), 4)
            row[f"change {half}"] = f"{part.mean():+.4f}"
        worst = change.idxmin()
        row["worst set"] = f"{worst[1]} {change.min():+.3f}"
        row["sets < -0.05"] = int((change < -MAX_DROP).sum())
        lines.append(row)
    bases = {h: per_set.loc[h, BASE].mean() for h in per_set.index.get_level_values(0).unique()}
    head = "Base: elbo (mean AUROC " + ", ".join(f"{h} {v:.4f}" for h, v in bases.items()) + ")"
    return head + "\n\n" + markdown(pd.DataFrame(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--sets", nargs="+", help="set names (stems or substrings)")
    parser.add_argument("--half", choices=("A", "B"))
    parser.add_argument("--embedding-rows", type=int, default=2000)
    parser.add_argument("--results", type=Path, default=Path("score_variants.csv"))
    parser.add_argument("--resume", action="store_true", help="skip (set, seed) in --results")
    parser.add_argument("--report-from", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.report_from:
        print(report(pd.concat([pd.read_csv(p) for p in args.report_from])))
        return
    done = _done(args.results) if args.resume else set()
    for item in corpus(args.sets, args.half):
        for seed in args.seeds:
            if (item.short, seed) in done:
                continue
            rows = run_set(item, seed, args.embedding_rows)
            _append(args.results, rows)
            auroc, seconds = rows[0]["auroc"], rows[0]["seconds"]
            log(f"{item.short} seed {seed}: elbo {auroc:.4f} ({seconds:.0f} s)")
    print(report(pd.read_csv(args.results)))


def _done(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    old = pd.read_csv(path)
    return set(zip(old["set"], old["seed"].astype(int), strict=True))


def _append(path: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


if __name__ == "__main__":
    main(sys.argv[1:])
