"""The development corpus: vaepipe against six peers on 43 labelled sets in two fixed halves.

Sets (benchmarks/corpus_sets.py): 14 ADBench Classical, 22 ADBench embeddings (512/768
columns), 6 all-nominal categorical CSVs, NSL-KDD. Protocol as ADBench: sets over 10,000 rows
subsampled to 10,000 (seeded), a stratified 70/30 split per seed, every detector fit on the
train split without labels (anomalies included), AUROC and average precision on the test split;
NSL-KDD keeps nsl_kdd.py's normal-only training. vaepipe runs in this process through the
Python API (`--via api`, the default) or as a user runs it (`--via cli`: `vaepipe train/score`
subprocesses with configs/tabular.yaml unedited); only the id column, the excluded `label`
columns, the seed, and for the all-nominal sets data.categorical_columns are set, plus
`--settings`. Peers (IsolationForest, kNN, PCA, PyOD's VAE, ECOD, COPOD) get one-hot categories
and z-scored numbers (fit on the train split).

    python benchmarks/corpus.py [--seeds 1 2 3] [--sets cardio MVTec] [--half A|B]
        [--settings model.score_tolerance=0 ...] [--peers IsolationForest kNN | none]
        [--results out.csv] [--resume] [--via api|cli] [--max-rows 10000] [--embedding-rows N]
    python benchmarks/corpus.py --report-from out.csv [more.csv]      # tables of earlier runs
    python benchmarks/corpus.py --screen base.csv variant1.csv ...    # config screen verdicts

`--settings model.hidden_units=auto` sizes the hidden layers from the number of feature columns D
(two layers of 4D in [32, 256]); `model.latent_dim=auto` is the product's own rule
(`configs/schema.py`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from adbench import isolation_forest, knn_distance, pca_error, pyod_vae
from common import log, machine, markdown, read_by_id, vaepipe_score, vaepipe_train
from corpus_sets import ID, MAX_ROWS, CorpusSet, Split, corpus
from sklearn.metrics import average_precision_score, roc_auc_score

VAEPIPE = "vaepipe"
PCA_VARIANCE = 0.9
PEERS = ("IsolationForest", "kNN", "PCA", "PyOD-VAE", "ECOD", "COPOD")
GAP = 0.10  # "more than 0.10 below the best peer": a set the detector fails on
MAX_DROP = 0.05  # the project's rule: a changed default costs no set more than this
AUTO = "auto"


# ------------------------------------------------------------------------------------ vaepipe


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`key=value` strings -> {key: value} with values read as YAML (0 -> int, [64, 32] ->
    list); `auto` stays a string and is sized per set by `sized_settings`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--settings takes key=value pairs. Received: {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def sized_settings(settings: dict[str, Any], width: int) -> dict[str, Any]:
    """`auto` hidden_units from D feature columns (the plain VAE's rule)."""
    out = dict(settings)
    if out.get("model.hidden_units") == AUTO:
        units = int(np.clip(4 * width, 32, 256))
        out["model.hidden_units"] = [units, units]
    return out


def base_settings(split: Split, seed: int) -> dict[str, Any]:
    """What a user states about the data: its id, its label columns, nominal columns."""
    out: dict[str, Any] = {"data.id_column": ID, "train.seed": seed}
    if split.exclude:
        out["data.exclude_columns"] = split.exclude
    if split.force_categorical:
        out["data.categorical_columns"] = split.categorical
    return out


def vaepipe_api(split: Split, settings: dict[str, Any]) -> pd.DataFrame:
    """`vaepipe.fit(train)` then the test scores and flags, in the order of `split.test`."""
    import vaepipe

    detector = vaepipe.fit(split.train, settings=settings)
    flags = detector.score(split.test)
    flags.index = flags["record_id"].astype(np.int64)
    return flags.loc[split.test[ID].to_numpy(np.int64), ["score", "is_anomaly"]]


def vaepipe_cli(split: Split, settings: dict[str, Any]) -> pd.DataFrame:
    """CSV -> `vaepipe train --config configs/tabular.yaml --set ...` -> `vaepipe score`."""
    overrides = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in
                 settings.items()]  # fmt: skip
    overrides = [o.removesuffix("\n...") for o in overrides]
    with tempfile.TemporaryDirectory(prefix="vaepipe-corpus-") as tmp:
        work = Path(tmp)
        split.train.to_csv(work / "train.csv", index=False)
        split.test.to_csv(work / "test.csv", index=False)
        vaepipe_train(work / "train.csv", work / "model", overrides)
        vaepipe_score(work / "model", work / "test.csv", work / "scores")
        flags = read_by_id(work / "scores" / "flags", split.test[ID])
    return flags[["score", "is_anomaly"]]


# ------------------------------------------------------------------------------------ peers


def peer_features(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """One-hot categories (0/1; the vocabulary of train and test, so that an unseen test value
    has a column of its own) and z-scored numbers (train mean/std; a constant column gets std 1)."""
    both = pd.concat([split.train, split.test])[split.features]
    numeric = [c for c in split.features if c not in split.categorical]
    nums = both[numeric].to_numpy(np.float64)
    fit = nums[: len(split.train)]
    std = fit.std(axis=0)
    nums = (nums - fit.mean(axis=0)) / np.where(std > 0, std, 1.0)
    parts = [nums]
    if split.categorical:
        onehot = pd.get_dummies(both[split.categorical].astype(str), dtype=np.float64)
        parts.append(onehot.to_numpy())
    values = np.hstack(parts)
    return values[: len(split.train)], values[len(split.train) :]


def ecod(x_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    from pyod.models.ecod import ECOD

    return ECOD().fit(x_train).decision_function(x_test)


def copod(x_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    from pyod.models.copod import COPOD

    return COPOD().fit(x_train).decision_function(x_test)


def peer_runs(
    x_train: np.ndarray, x_test: np.ndarray, seed: int
) -> dict[str, Callable[[], np.ndarray]]:
    return {
        "IsolationForest": lambda: isolation_forest(x_train, x_test, seed),
        "kNN": lambda: knn_distance(x_train, x_test),
        "PCA": lambda: pca_error(x_train, x_test, PCA_VARIANCE),
        "PyOD-VAE": lambda: pyod_vae(x_train, x_test, seed, None),
        "ECOD": lambda: ecod(x_train, x_test),
        "COPOD": lambda: copod(x_train, x_test),
    }


# ------------------------------------------------------------------------------------ runs


def run_set(
    item: CorpusSet, seed: int, args: argparse.Namespace, settings: dict[str, Any]
) -> list[dict]:
    """Every detector on one (set, seed): result rows.

    With ``--ensemble K`` vaepipe gets one row per ensemble size 1..K, all from the same K
    fits (size k averages the first k), so a screen of the ensemble against one fit compares
    the very same members."""
    split = item.split(seed, args.max_rows, args.embedding_rows)
    base_config = " ".join(args.settings) or "defaults"
    rows: list[tuple[str, str, np.ndarray, float, float]] = []
    if not args.no_vaepipe:
        chosen = {**base_settings(split, seed), **sized_settings(settings, len(split.features))}
        run = vaepipe_api if args.via == "api" else vaepipe_cli
        members = _members(run, split, chosen, args.ensemble)
        if args.member_scores:
            _save_members(args.member_scores, item.short, seed, split, members)
        for k in range(1, args.ensemble + 1):
            flags, seconds = _ensemble(members[:k])
            config = base_config if k == 1 else f"{base_config} ensemble={k}"
            # The calibration check: the share of the test split's normal rows that are
            # flagged (near scoring.target_fpr when training is normal-only; lower when the
            # unlabelled training rows hold anomalies that raise the calibration threshold).
            normal = float(flags["is_anomaly"].to_numpy()[split.y_test == 0].mean())
            rows.append((VAEPIPE, config, _checked(flags["score"].to_numpy()), seconds, normal))
    if args.peers:
        runs = peer_runs(*peer_features(split), seed)
        for name in args.peers:
            values, seconds = _timed(runs[name])
            rows.append((name, "", values, seconds, np.nan))
    return [
        {
            "set": item.short,
            "family": item.family,
            "half": item.half,
            "seed": seed,
            "method": method,
            "config": config,
            "via": args.via if method == VAEPIPE else "",
            "auroc": roc_auc_score(split.y_test, values),
            "ap": average_precision_score(split.y_test, values),
            "seconds": seconds,
            "train_rows": len(split.train),
            "test_rows": len(split.test),
            "features": len(split.features),
            "normal_flagged": normal,
        }
        for method, config, values, seconds, normal in rows
    ]


def _members(
    run: Callable, split: Split, settings: dict[str, Any], members: int
) -> list[tuple[pd.DataFrame, float]]:
    """`members` fits that differ only in train.seed (the first is the plain fit), each with
    its seconds: the benchmark's ensemble, to measure the lever against the same fits."""
    out = []
    for k in range(members):
        started = time.perf_counter()
        flags = run(split, {**settings, "train.seed": settings["train.seed"] + 1000 * k})
        out.append((flags, time.perf_counter() - started))
    return out


def _ensemble(members: list[tuple[pd.DataFrame, float]]) -> tuple[pd.DataFrame, float]:
    """The mean score of the members; flagged where the mean of their flags is at least one
    half; the seconds of all of them."""
    seconds = sum(s for _, s in members)
    if len(members) == 1:
        return members[0][0], seconds
    frames = [f for f, _ in members]
    return pd.DataFrame(
        {"score": np.mean([f["score"].to_numpy() for f in frames], axis=0),
         "is_anomaly": np.mean([f["is_anomaly"].to_numpy() for f in frames], axis=0) >= 0.5}
    ), seconds  # fmt: skip


def _save_members(
    folder: Path, name: str, seed: int, split: Split, members: list[tuple[pd.DataFrame, float]]
) -> None:
    """Each member's test scores and the labels, for combinations screened after the run."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / f"{name}_seed{seed}.npz",
        scores=np.stack([f["score"].to_numpy(np.float64) for f, _ in members]),
        flags=np.stack([f["is_anomaly"].to_numpy(bool) for f, _ in members]),
        labels=np.asarray(split.y_test),
    )


def _timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    values = _checked(run())
    return values, time.perf_counter() - started


def _checked(values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise RuntimeError(f"{int((~np.isfinite(values)).sum())} non-finite scores")
    return values


# ------------------------------------------------------------------------------------ tables


def methods_of(results: pd.DataFrame) -> list[str]:
    present = set(results.method)
    return [m for m in (VAEPIPE, *PEERS) if m in present]


def per_set(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Sets x methods (mean over seeds), with the half, the best peer and vaepipe's gap."""
    table = results.pivot_table(index="set", columns="method", values=metric, aggfunc="mean")
    table = table[methods_of(results)]
    peers = [m for m in PEERS if m in table.columns]
    if peers and VAEPIPE in table.columns:
        table["best peer"] = table[peers].max(axis=1)
        table["vaepipe - best peer"] = table[VAEPIPE] - table["best peer"]
    meta = results.drop_duplicates("set").set_index("set")[["half", "family"]]
    order = {s: i for i, s in enumerate(dict.fromkeys(results.set))}
    table = meta.join(table, how="right")
    return table.loc[sorted(table.index, key=lambda s: (meta.half[s], order[s]))]


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean AUROC, mean AP, mean rank by AUROC (1 = best) and the sets more than
    GAP below the best other detector on that set."""
    methods = methods_of(results)
    auroc = per_set(results, "auroc")[methods]
    ap = per_set(results, "ap")[methods]
    ranks = auroc.rank(axis=1, ascending=False, method="average")
    below = {}
    for m in methods:
        others = auroc.drop(columns=[m])
        below[m] = int((auroc[m] < others.max(axis=1) - GAP).sum()) if others.shape[1] else 0
    return pd.DataFrame(
        {
            "mean AUROC": auroc.mean(),
            "mean AP": ap.mean(),
            "mean rank": ranks.mean(),
            f"sets >{GAP:.2f} below best other": pd.Series(below).astype(str),
            "sets": auroc.count().astype(int).astype(str),
            "mean s per fit+score": results.groupby("method").seconds.mean().reindex(methods),
        }
    )


def report(results: pd.DataFrame) -> str:
    seeds = sorted(results.seed.unique())
    parts = [f"Seeds {seeds}; vaepipe config: {sorted(set(results.config) - {''})}\n"]
    for half in ("A", "B"):
        part = results[results.half == half]
        if len(part):
            parts += [f"Half {half} ({part.set.nunique()} sets):\n", markdown(summary(part),
                      index=True), ""]  # fmt: skip
    if results.half.nunique() > 1:
        parts += [f"Whole corpus ({results.set.nunique()} sets):\n", markdown(summary(results),
                  index=True), ""]  # fmt: skip
    flagged = _normal_flagged(results)
    if flagged is not None:
        parts += ["vaepipe: share of the test split's normal rows flagged (target_fpr 0.01):\n",
                  markdown(flagged, index=True), ""]  # fmt: skip
    for metric in ("auroc", "ap"):
        parts += [f"Per set, {metric.upper()}:\n", markdown(per_set(results, metric), index=True),
                  ""]  # fmt: skip
    return "\n".join(parts)


def _normal_flagged(results: pd.DataFrame) -> pd.DataFrame | None:
    """Per family: the median and range over sets of vaepipe's flagged share of normal rows."""
    if "normal_flagged" not in results:
        return None
    shares = pd.to_numeric(results.normal_flagged, errors="coerce")  # CSVs read without NA
    mine = results.assign(normal_flagged=shares)
    mine = mine[(mine.method == VAEPIPE) & mine.normal_flagged.notna()]
    if mine.empty:
        return None
    per_set_share = mine.groupby(["family", "set"]).normal_flagged.mean()
    grouped = per_set_share.groupby(level="family")
    return pd.DataFrame(
        {
            "sets": grouped.size(),
            "median": grouped.median(),
            "min": grouped.min(),
            "max": grouped.max(),
        }  # fmt: skip
    )


def screen(base: pd.DataFrame, variants: list[pd.DataFrame]) -> str:
    """Each variant's vaepipe AUROC against the base's, per half: the mean change, the worst
    set, the sets that lose more than MAX_DROP, and the project's verdict (a default changes
    only when the mean rises on BOTH halves and no set loses more than MAX_DROP)."""
    ref = per_set(base[base.method == VAEPIPE], "auroc")
    rows = []
    for variant in variants:
        mine = per_set(variant[variant.method == VAEPIPE], "auroc")
        delta = (mine[VAEPIPE] - ref[VAEPIPE]).dropna()
        halves = ref.half.reindex(delta.index)
        row: dict[str, Any] = {"config": variant.config[variant.method == VAEPIPE].iloc[0]}
        for half in ("A", "B"):
            part = delta[halves == half]
            row[f"sets {half}"] = len(part)
            row[f"base {half}"] = f"{ref[VAEPIPE][part.index].mean():.4f}"
            row[f"mean AUROC {half}"] = f"{mine[VAEPIPE][part.index].mean():.4f}"
            row[f"change {half}"] = part.mean()
        worst = delta.idxmin()
        row["worst set"] = f"{worst} {delta[worst]:+.3f}"
        row[f"sets < -{MAX_DROP:.2f}"] = int((delta < -MAX_DROP).sum())
        holds = row["change A"] > 0 and row["change B"] > 0 and row[f"sets < -{MAX_DROP:.2f}"] == 0
        row["verdict"] = "change" if holds else "keep default"
        row["change A"], row["change B"] = (f"{row[k]:+.4f}" for k in ("change A", "change B"))
        rows.append(row)
    base_config = base.config[base.method == VAEPIPE].iloc[0]
    means = {h: ref[VAEPIPE][ref.half == h].mean() for h in ("A", "B")}
    head = f"Base: {base_config} (mean AUROC A {means['A']:.4f}, B {means['B']:.4f})\n"
    return head + "\n" + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


# ------------------------------------------------------------------------------------ main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sets", nargs="+", help="set names (stems or substrings); default all")
    parser.add_argument("--half", choices=("A", "B"), help="only this half of the corpus")
    parser.add_argument("--settings", nargs="+", default=[], help="vaepipe key=value overrides")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), help=f"of {PEERS}, or none")
    parser.add_argument("--no-vaepipe", action="store_true", help="peers only")
    parser.add_argument("--via", choices=("api", "cli"), default="api")
    parser.add_argument(
        "--ensemble", type=int, default=1, help="average the scores of this many seeded fits"
    )
    parser.add_argument(
        "--member-scores", type=Path, help="save each ensemble member's test scores here (.npz)"
    )
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS, help="subsample cap per set")
    parser.add_argument(
        "--embedding-rows", type=int, default=MAX_ROWS, help="a lower cap for the embedding sets"
    )
    parser.add_argument("--results", type=Path, help="CSV of result rows, written as sets finish")
    parser.add_argument("--resume", action="store_true", help="skip (set, seed) in --results")
    parser.add_argument("--report-from", type=Path, nargs="+", help="print these CSVs' tables")
    parser.add_argument("--screen", type=Path, nargs="+", help="BASE.csv VARIANT.csv ...")
    args = parser.parse_args()
    if args.peers == ["none"]:
        args.peers = []
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {PEERS} or none")
    return args


def main() -> None:
    args = parse_args()
    if args.report_from:
        print(report(pd.concat([pd.read_csv(p, keep_default_na=False) for p in args.report_from])))
        return
    if args.screen:
        frames = [pd.read_csv(p, keep_default_na=False) for p in args.screen]
        print(screen(frames[0], frames[1:]))
        return
    settings = parse_settings(args.settings)
    sets = corpus(args.sets, args.half)
    if not sets:
        sys.exit(f"no corpus sets match --sets {args.sets} --half {args.half}")
    print(f"machine: {machine()}\n")
    results = _previous(args)
    started = time.perf_counter()
    for seed in args.seeds:  # every set at the first seed first: a partial run covers them all
        for item in sets:
            if len(results) and ((results.set == item.short) & (results.seed == seed)).any():
                continue
            log(f"{item.short} ({item.family}, half {item.half}) seed {seed}")
            rows = pd.DataFrame(run_set(item, seed, args, settings))
            log(
                ", ".join(f"{r.method} {r.auroc:.3f} ({r.seconds:.0f}s)" for r in rows.itertuples())
            )
            results = pd.concat([results, rows], ignore_index=True)
            if args.results:
                results.to_csv(args.results, index=False)
    log(f"done in {time.perf_counter() - started:.0f} s")
    print(report(results))


def _previous(args: argparse.Namespace) -> pd.DataFrame:
    if args.resume and args.results and args.results.exists():
        return pd.read_csv(args.results, keep_default_na=False)
    return pd.DataFrame()


if __name__ == "__main__":
    main()
