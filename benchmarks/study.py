"""The pruning accuracy study on the held-out synthetic world: every method at every keep, with bootstrap intervals.

    python benchmarks/study.py                                   # the study -> results/study.json + 2 plots
    python benchmarks/study.py --analyse-only                    # re-read the run folders, redo only the numbers
    python benchmarks/study.py --quick --out /tmp/study          # tiny, random weights: checks that it runs (~1 min)

Three steps, each resumable (a rerun redoes nothing that is done; the full grid is 35 runs per set, many hours
on 2 CPU cores, so stopping and rerunning is the normal way to run it):

1. **Data.** The held-out synthetic world written by ``pipeline.synth.write`` in the RefCOCO layout (split
   ``val``, ``--images`` images, at most ``--max-expressions`` each: >= 1,000 image expressions by default) and
   the ReVOS layout (split ``valid``, ``--videos`` videos of ``--frames`` frames: >= 300 video expressions),
   each converted to shards with ``jobs/make_shards.py``, under ``--data/<set>-<split>-<settings>/``.
2. **Runs.** ``jobs/sweep.py`` in-process (``--no-ray``) over ``--methods`` x ``--keeps`` (sweep adds ``none`` at
   keep 1.0) into ``{--out}/sweep-refcoco`` and ``{--out}/sweep-revos``, then EVTP's ablations at
   ``--ablation-keep`` (pruning.md §1.6: ``alpha``, fixed ``lam``, ``first`` centre rule) into the same folders.
   Every (model, method, keep) run folder resumes by itself.
3. **Analysis** (reads the run folders and ``synth_index.json`` only), clusters = images or videos:
   - accuracy per (method, keep): images gIoU (mean per-expression IoU, I/(U+1e-5), 1 where U = 0,
     metrics.md §4.4) and cIoU (sum I / sum U); videos J, F, J&F (means of the per-expression j, f, jf,
     metrics.md §2.2), each with its 95% cluster-bootstrap interval, in percent;
   - EVTP against every other method at the same keep, and EVTP at each keep against ``none`` at 1.0: the
     paired difference (gIoU and cIoU for images, J&F for videos), its interval and two-sided p-value;
   - the same for small and large targets (split at ``--size-threshold`` of target_area_fraction);
   - the paper's claim (pruning.md §1.8): Spearman's rho between each expression's coverage radius (the tokens
     table's feature_radius and grid_radius of its frame, the mean over a video's frames, the expression's own
     rows for FastV) and its IoU (images) or J (videos), per (method, keep), per method and pooled over the
     pruned runs. A larger radius is worse coverage, so rho < 0 supports "quality tracks coverage";
   - the ablations at ``--ablation-keep``, each against the default EVTP.

Prints the tables and a verdict that lists every comparison as it comes out, and writes ``study.json`` (every
number, with the data and run settings in ``meta``), ``study_keep.png`` (accuracy against keep, error bars = the
intervals, ``none`` as a dashed line) and ``study_speedup.png`` (accuracy against the FLOP speed-up of
HyperSeg-3B from ``results/flops.json``) under ``--results``.
"""

import argparse
import importlib
import json
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.engine.cli import format_table, keep_value
from pipeline.metrics.bootstrap import LEVEL, Interval, interval, paired, ratio_of_sums, spearman
from pipeline.results import load

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FLOPS = RESULTS / "flops.json"
CHECKPOINT = "checkpoints/synth-hyperseg"
REFERENCE = "evtp"  # the method every comparison is about
UNPRUNED = ("none", 1.0)  # the reference run jobs/sweep.py adds to every model
KEYS = ["sample_key", "expression_id"]
RADII = ("feature_radius", "grid_radius")
TARGET_EXPRESSIONS = {"refcoco": 1000, "revos": 300}  # the set sizes the study is designed for
# Below this many clusters a percentile bootstrap has too few distinct resamples (2 clusters: 3) to judge by.
MIN_CLUSTERS = 5
# Full study and --quick; explicit flags override either.
FULL = {
    "images": 270,
    "videos": 85,
    "frames": 8,
    "max_expressions": 4,
    "methods": "evtp,kcenter,divprune,random,grid,visionzip,fastv",
    "keeps": "0.05,0.1,0.2,0.5",
    "ablations": "evtp:alpha=0.5,evtp:alpha=2.0,evtp:lam=0.0,evtp:first=farthest_from_mean,"
    "evtp:first=grid_center,evtp:first=index0",
    "ablation_keep": "0.1",
    "rounds": 2000,
    "shard_samples": 20,
    "out": "runs/study",
}
QUICK = {
    **FULL,
    "images": 3,
    "videos": 2,
    "frames": 2,
    "max_expressions": 2,
    "methods": "evtp,random",
    "keeps": "0.1",
    "ablations": "evtp:alpha=0.5",
    "rounds": 200,
    "shard_samples": 2,
    "out": "runs/study-quick",
}


# ------------------------------------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class Metric:
    """An accuracy number: the columns of the per-expression table it reads and how it reduces them."""

    name: str
    columns: tuple[str, ...]
    statistic: Callable[[np.ndarray], float] = np.mean

    def values(self, table: pd.DataFrame, suffix: str = "") -> np.ndarray:
        """``(n,)`` for one column, ``(n, k)`` rows for several (cIoU: intersection, union)."""
        data = table[[c + suffix for c in self.columns]].to_numpy(np.float64)
        return data[:, 0] if data.shape[1] == 1 else data


GIOU = Metric("gIoU", ("iou",))
CIOU = Metric("cIoU", ("intersection", "union"), ratio_of_sums)
J, F, JF = Metric("J", ("j",)), Metric("F", ("f",)), Metric("J&F", ("jf",))


def pair_iou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Per-expression IoU as LISA's gIoU averages it: I/(U + 1e-5), and 1 where the union is empty."""
    intersection, union = np.asarray(intersection, np.float64), np.asarray(union, np.float64)
    return np.where(union == 0, 1.0, intersection / (union + 1e-5))


def as_dict(value: Interval, scale: float = 1.0) -> dict:
    return {"value": value.value * scale, "low": value.low * scale, "high": value.high * scale}


def estimate(table: pd.DataFrame, metric: Metric, *, rounds: int, seed: int) -> dict:
    """The metric in percent with its cluster-bootstrap interval (clusters: the samples)."""
    result = interval(metric.values(table), metric.statistic, groups=list(table.sample_key), rounds=rounds, seed=seed)
    return as_dict(result, 100.0)


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: Metric, *, rounds: int, seed: int) -> dict:
    """``metric(a) - metric(b)`` in points on the expressions both have, resampled together by sample."""
    both = a.merge(b, on=KEYS, suffixes=("_a", "_b"))
    if both.empty:
        raise ValueError("the two runs share no expression")
    result = paired(
        metric.values(both, "_a"),
        metric.values(both, "_b"),
        metric.statistic,
        groups=list(both.sample_key),
        rounds=rounds,
        seed=seed,
    )
    difference = as_dict(result.difference, 100.0)
    clusters = both.sample_key.nunique()
    return {
        "difference": difference["value"],
        "low": difference["low"],
        "high": difference["high"],
        "p_value": result.p_value,
        "significant": result.significant and clusters >= MIN_CLUSTERS,
        "expressions": len(both),
        "clusters": clusters,
    }


def correlation(x: np.ndarray, y: np.ndarray, groups: Iterable, *, rounds: int, seed: int) -> dict:
    """Spearman's rho of ``x`` and ``y`` with its cluster-bootstrap interval (NaN if either is constant)."""
    rows = np.column_stack([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    with np.errstate(invalid="ignore", divide="ignore"):
        result = interval(rows, spearman, groups=list(groups), rounds=rounds, seed=seed)
    return as_dict(result)


def outcome(comparison: dict, first: str = "EVTP", second: str = "") -> str:
    """How a paired ``first``-minus-``second`` comparison came out: ``EVTP better`` or ``EVTP worse`` (``first``
    alone), else ``<second> better`` when given, or no significant difference."""
    if comparison["clusters"] < MIN_CLUSTERS:
        return f"too few clusters to judge (< {MIN_CLUSTERS})"
    if not comparison["significant"]:
        return "no significant difference"
    if comparison["difference"] > 0:
        return f"{first} better"
    return f"{second} better" if second else f"{first} worse"


def coverage_verdict(rho: dict) -> str:
    """rho < 0 (larger radius, lower accuracy) supports "quality tracks coverage"."""
    low, high = rho["low"], rho["high"]
    if _missing(rho["value"]):
        return "undefined: the radius or the accuracy is constant"
    if _missing(low) or _missing(high):
        return "no interval: some resamples are constant (too few clusters)"
    if high < 0:
        return "supports (rho < 0)"
    if low > 0:
        return "contradicts (rho > 0)"
    return "inconclusive (interval holds 0)"


def _missing(value: float | None) -> bool:
    return value is None or bool(np.isnan(value))


def size_threshold(fractions: np.ndarray, rule: str) -> float:
    """``median`` of the set's target area fractions, or a fixed fraction given as a number."""
    return float(np.median(fractions)) if rule == "median" else float(rule)


# ------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class DataSet:
    """One held-out set: the synthetic world in a layout, its settings, and where it lives."""

    name: str  # refcoco or revos
    split: str
    count: int
    max_expressions: int
    frames: int | None = None

    @property
    def video(self) -> bool:
        return self.frames is not None

    @property
    def folder(self) -> str:
        """Named by its settings, so other settings never resume into (or from) these shards."""
        frames = f"-t{self.frames}" if self.video else ""
        return f"{self.name}-{self.split}-n{self.count}-e{self.max_expressions}{frames}"

    def index_path(self, root: Path) -> Path:
        # The RefCOCO writer keeps its index beside instances.json; ReVOS at the layout's root.
        return root / "layout" / ("refcoco" if self.name == "refcoco" else "") / "synth_index.json"


def prepare_data(dataset: DataSet, data: Path, shard_samples: int) -> tuple[str, pd.DataFrame]:
    """Write the set and its shards unless the manifest is there; the shard manifest and the set's index."""
    from pipeline.synth.write import WRITERS, read_index

    root = data / dataset.folder
    manifest = root / "shards" / "manifest.json"
    if manifest.is_file():
        print(f"data: {dataset.folder} exists, not rewritten", flush=True)
    else:
        options = {"split": dataset.split, "count": dataset.count, "max_expressions": dataset.max_expressions}
        if dataset.video:
            options["frames"] = dataset.frames
        written = WRITERS[dataset.name](root / "layout", **options)
        print(f"data: wrote {written.summary()}", flush=True)
        make_shards = _job("make_shards")
        argv = ["--format", dataset.name, "--root", str(root / "layout"), "--split", dataset.split]
        make_shards.main([*argv, "--out", str(root / "shards"), "--max-samples", str(shard_samples)])
    index = pd.DataFrame(read_index(dataset.index_path(root)))
    return str(manifest), index[index.split == dataset.split].reset_index(drop=True)


def _job(name: str):
    """A ``jobs/`` script as a module (they import each other by bare name)."""
    jobs = str(ROOT / "jobs")
    if jobs not in sys.path:
        sys.path.insert(0, jobs)
    return importlib.import_module(name)


# ------------------------------------------------------------------------------------------------ runs


@dataclass(frozen=True)
class Plan:
    """The runs of the study on one set: the main grid and the ablations, with the model they use."""

    model: str  # a checkpoint folder or a preset, as jobs/sweep.py --models takes it
    methods: list[str]
    keeps: list[float]
    ablations: list[str]
    ablation_keep: float

    @property
    def label(self) -> str:
        """The model's folder name in the sweep output, as jobs/sweep.py names it."""
        return Path(self.model.rstrip("/")).name if Path(self.model).is_dir() else self.model

    def runs(self) -> list[tuple[str, float]]:
        grid = [(m, k) for m in self.methods for k in self.keeps]
        return [UNPRUNED, *grid, *((a, self.ablation_keep) for a in self.ablations)]

    def sweep_calls(self, manifest: str, output: str) -> list[list[str]]:
        base = ["--no-ray", "--shards", manifest, "--models", self.model, "--output", output]
        calls = [[*base, "--methods", ",".join(self.methods), "--keeps", ",".join(map(str, self.keeps))]]
        if self.ablations:
            calls.append([*base, "--methods", ",".join(self.ablations), "--keeps", str(self.ablation_keep)])
        return calls


def run_folder(output: str, label: str, method: str, keep: float) -> str:
    """``{output}/{model}/{method-with-options}-{keep}``, the folder jobs/sweep.py gives the run."""
    return f"{output.rstrip('/')}/{label}/{method.replace(':', '-').replace('=', '')}-{keep}"


def run_sweeps(plan: Plan, manifest: str, output: str) -> None:
    sweep = _job("sweep")
    for argv in plan.sweep_calls(manifest, output):
        print(f"sweep {' '.join(argv)}", flush=True)
        code = sweep.main(argv)
        if code:
            raise SystemExit(f"jobs/sweep.py exited with {code}")


def expression_table(folder: str, video: bool) -> pd.DataFrame:
    """One row per expression of a run: its scores and the coverage radii of the tokens it was answered from."""
    metrics = load(folder, "metrics")
    table = metrics[[*KEYS, "j", "f", "jf", "intersection", "union"]].copy()
    if not video:
        table["iou"] = pair_iou(table.intersection, table.union)
    return table.merge(expression_radii(load(folder, "tokens"), table[KEYS]), on=KEYS, how="left")


def expression_radii(tokens: pd.DataFrame, expressions: pd.DataFrame) -> pd.DataFrame:
    """Mean radii over an expression's frames: its own rows where the selection depends on it (FastV), else the
    rows its frames share (expression_id null)."""
    radii = list(RADII)
    tokens = tokens.astype({name: np.float64 for name in radii})  # the tables store float32: average in float64
    own = tokens[tokens.expression_id.notna()].groupby(KEYS)[radii].mean().reset_index()
    shared = tokens[tokens.expression_id.isna()].groupby("sample_key")[radii].mean().reset_index()
    out = expressions.merge(own, on=KEYS, how="left")
    fill = expressions[["sample_key"]].merge(shared, on="sample_key", how="left")
    for name in radii:
        own_value, shared_value = out[name].to_numpy(np.float64), fill[name].to_numpy(np.float64)
        out[name] = np.where(np.isnan(own_value), shared_value, own_value)
    return out


def load_runs(plan: Plan, output: str, video: bool) -> tuple[dict[tuple[str, float], pd.DataFrame], list[str]]:
    """The per-expression tables of every run that exists, and the folders that are missing or empty."""
    tables, missing = {}, []
    for method, keep in plan.runs():
        folder = run_folder(output, plan.label, method, keep)
        table = expression_table(folder, video) if Path(folder).is_dir() else pd.DataFrame()
        if table.empty:
            missing.append(folder)
        else:
            tables[method, keep] = table
    return tables, missing


# ------------------------------------------------------------------------------------------------ analysis


@dataclass(frozen=True)
class Settings:
    rounds: int
    seed: int
    size_rule: str

    def kw(self) -> dict:
        return {"rounds": self.rounds, "seed": self.seed}


def metrics_for(video: bool) -> tuple[list[Metric], list[Metric]]:
    """Metrics reported per run, and those compared pairwise (primary first)."""
    return ([J, F, JF], [JF]) if video else ([GIOU, CIOU], [GIOU, CIOU])


def accuracy_rows(runs: dict, metrics: list[Metric], settings: Settings) -> list[dict]:
    rows = []
    for (method, keep), table in runs.items():
        row = {"method": method, "keep": keep, "expressions": len(table), "samples": table.sample_key.nunique()}
        row.update({m.name: estimate(table, m, **settings.kw()) for m in metrics})
        row.update({name: _mean(table[name]) for name in RADII})
        rows.append(row)
    return rows


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if values.notna().any() else None


def paired_rows(runs: dict, metrics: list[Metric], plan: Plan, settings: Settings) -> list[dict]:
    """EVTP against every other method of the main grid at the same keep."""
    rows = []
    for keep in plan.keeps:
        if (REFERENCE, keep) not in runs:
            continue
        for method in plan.methods:
            if method == REFERENCE or (method, keep) not in runs:
                continue
            for metric in metrics:
                result = compare(runs[REFERENCE, keep], runs[method, keep], metric, **settings.kw())
                rows.append({"keep": keep, "versus": method, "metric": metric.name, **result})
    for row in rows:
        row["outcome"] = outcome(row)
    return rows


def cost_rows(runs: dict, metrics: list[Metric], plan: Plan, settings: Settings) -> list[dict]:
    """EVTP at each keep against the unpruned model: what pruning costs (negative: accuracy lost)."""
    rows = []
    if UNPRUNED not in runs:
        return rows
    for keep in plan.keeps:
        if (REFERENCE, keep) in runs:
            for metric in metrics:
                result = compare(runs[REFERENCE, keep], runs[UNPRUNED], metric, **settings.kw())
                rows.append({"keep": keep, "versus": "none", "metric": metric.name, **result})
    for row in rows:
        row["outcome"] = outcome(row, "pruned EVTP", "none")
    return rows


def size_split(runs: dict, index: pd.DataFrame, metrics: list[Metric], plan: Plan, settings: Settings) -> dict:
    """Accuracy and the paired comparisons for targets below and at-or-above the threshold."""
    threshold = size_threshold(index.target_area_fraction.to_numpy(), settings.size_rule)
    small = index.target_area_fraction < threshold
    keys = {"small": index.loc[small, KEYS], "large": index.loc[~small, KEYS]}
    out = {"rule": settings.size_rule, "threshold": threshold, "bins": {}}
    for name, members in keys.items():
        part = {k: t.merge(members, on=KEYS) for k, t in runs.items()}
        part = {k: t for k, t in part.items() if not t.empty}
        out["bins"][name] = {
            "expressions": len(members),
            "samples": int(members.sample_key.nunique()),
            "accuracy": accuracy_rows(part, metrics, settings),
            "paired": paired_rows(part, metrics, plan, settings),
            "versus_none": cost_rows(part, metrics, plan, settings),
        }
    return out


def coverage_rows(runs: dict, plan: Plan, video: bool, settings: Settings) -> list[dict]:
    """Spearman's rho of each radius against per-expression accuracy: per (method, keep), per method, pooled."""
    accuracy = "j" if video else "iou"
    pruned = {k: t for k, t in runs.items() if k[0] != UNPRUNED[0] and k[0] in plan.methods}
    scopes = [(m, k, [(m, k)]) for m, k in pruned]
    # Pooled over a method's keeps, then over everything (only where that pools more than one run).
    per_method = [(m, "all", [k for k in pruned if k[0] == m]) for m in plan.methods]
    scopes += [s for s in per_method if len(s[2]) > 1]
    if len(pruned) > 1:
        scopes.append(("all", "all", list(pruned)))
    rows = []
    for method, keep, members in scopes:
        if not members:
            continue
        table = pd.concat([pruned[k] for k in members], ignore_index=True)
        for radius in RADII:
            valid = table[table[radius].notna()]
            rho = correlation(valid[radius], valid[accuracy], valid.sample_key, **settings.kw())
            clusters = valid.sample_key.nunique()
            judged = coverage_verdict(rho) if clusters >= MIN_CLUSTERS else f"too few clusters (< {MIN_CLUSTERS})"
            rows.append(
                {
                    "method": method,
                    "keep": keep,
                    "radius": radius,
                    "accuracy": "J" if video else "IoU",
                    "points": len(valid),
                    "clusters": clusters,
                    "rho": rho,
                    "verdict": judged,
                }
            )
    return rows


def ablation_rows(runs: dict, metrics: list[Metric], plan: Plan, settings: Settings) -> list[dict]:
    """Each ablation at the ablation keep, with its paired difference from the default EVTP (ablation - EVTP)."""
    default = (REFERENCE, plan.ablation_keep)
    rows = []
    for method in [REFERENCE, *plan.ablations]:
        if (method, plan.ablation_keep) not in runs:
            continue
        table = runs[method, plan.ablation_keep]
        row = {"method": method, "keep": plan.ablation_keep, "expressions": len(table)}
        row.update({m.name: estimate(table, m, **settings.kw()) for m in metrics})
        row.update({name: _mean(table[name]) for name in RADII})
        if method != REFERENCE and default in runs:
            row["versus_evtp"] = {m.name: compare(table, runs[default], m, **settings.kw()) for m in metrics}
            for result in row["versus_evtp"].values():
                result["outcome"] = outcome(result, "ablation", "default EVTP")
        rows.append(row)
    return rows


def analyse(runs: dict, index: pd.DataFrame, plan: Plan, video: bool, settings: Settings) -> dict:
    """Every number of one set."""
    unknown = pd.concat(list(runs.values()))[KEYS].drop_duplicates().merge(index[KEYS], how="left", indicator=True)
    if (unknown._merge != "both").any():
        raise SystemExit(f"{(unknown._merge != 'both').sum()} expressions of the runs are not in synth_index.json")
    reported, compared = metrics_for(video)
    return {
        "accuracy": accuracy_rows(runs, reported, settings),
        "paired": paired_rows(runs, compared, plan, settings),
        "versus_none": cost_rows(runs, compared, plan, settings),
        "by_size": size_split(runs, index, compared, plan, settings),
        "coverage": coverage_rows(runs, plan, video, settings),
        "ablations": ablation_rows(runs, compared, plan, settings),
    }


# ------------------------------------------------------------------------------------------------ speed-ups


def flop_speedups(path: Path) -> dict[str, dict[float, float]]:
    """End-to-end FLOP speed-up against keep 1 per keep, HyperSeg-3B image table: pruning before the LLM, and
    FastV's variant (it prunes inside the LLM)."""
    tables = json.loads(path.read_text())["tables"]
    (table,) = [t for t in tables if t["meta"]["preset"] == "hyperseg-3b" and t["meta"]["case"] == "image"]
    rows = table["rows"]
    return {
        "before_llm": {float(r["keep"]): r["speedup_vs_keep1"] for r in rows},
        "fastv": {float(r["keep"]): r["variants"]["fastv"]["speedup_vs_keep1"] for r in rows},
    }


def speedup(speedups: dict, method: str, keep: float) -> float | None:
    if method == UNPRUNED[0]:
        return 1.0
    return speedups["fastv" if method.split(":")[0] == "fastv" else "before_llm"].get(float(keep))


# ------------------------------------------------------------------------------------------------ output


def cell(value: dict | None, key: str = "value") -> str:
    """``value [low, high]`` with 2 decimals (percent) for a bootstrap dict."""
    if not value or value.get(key) is None:
        return ""
    return f"{value[key]:.2f} [{value['low']:.2f}, {value['high']:.2f}]"


def rho_cell(value: dict) -> str:
    if _missing(value["value"]):
        return "nan"
    if _missing(value["low"]) or _missing(value["high"]):
        return f"{value['value']:+.3f} [no interval]"
    return f"{value['value']:+.3f} [{value['low']:+.3f}, {value['high']:+.3f}]"


def comparison_table(rows: list[dict]) -> str:
    shown = [
        {
            **{k: r[k] for k in ("keep", "versus", "metric", "expressions", "outcome") if k in r},
            "difference": cell(r, "difference"),
            "p": f"{r['p_value']:.4f}",
        }
        for r in rows
    ]
    return format_table(shown, ["keep", "versus", "metric", "expressions", "difference", "p", "outcome"])


def accuracy_table(rows: list[dict], metrics: list[Metric]) -> str:
    shown = [
        {
            "method": r["method"],
            "keep": r["keep"],
            "expressions": r["expressions"],
            **{m.name: cell(r[m.name]) for m in metrics},
            **{name: r.get(name) for name in RADII},
        }
        for r in rows
    ]
    return format_table(shown, ["method", "keep", "expressions", *(m.name for m in metrics), *RADII])


def print_set(name: str, result: dict, video: bool) -> None:
    reported, compared = metrics_for(video)
    unit = "videos" if video else "images"
    print(f"\n=== {name}: accuracy in % with 95% cluster-bootstrap intervals (clusters: {unit}) ===")
    print(accuracy_table(result["accuracy"], reported))
    print(f"\n{name}: EVTP minus each method at the same keep (points; p two-sided bootstrap, uncorrected)")
    print(comparison_table(result["paired"]))
    print(f"\n{name}: EVTP at each keep minus none at keep 1.0 (the cost of pruning)")
    print(comparison_table(result["versus_none"]))
    sizes = result["by_size"]
    for bin_name, part in sizes["bins"].items():
        side = "<" if bin_name == "small" else ">="
        print(
            f"\n{name}, {bin_name} targets (target_area_fraction {side} {sizes['threshold']:.5f}, "
            f"{sizes['rule']}): {part['expressions']} expressions in {part['samples']} {unit}"
        )
        print(accuracy_table(part["accuracy"], compared))
        print(comparison_table(part["paired"] + part["versus_none"]))
    print(f"\n{name}: Spearman rho of coverage radius against per-expression {'J' if video else 'IoU'}")
    print("(a larger radius is worse coverage: rho < 0 supports 'quality tracks coverage')")
    shown = [{**r, "rho": rho_cell(r["rho"])} for r in result["coverage"]]
    print(format_table(shown, ["method", "keep", "radius", "points", "rho", "verdict"]))
    print(f"\n{name}: EVTP ablations (versus: ablation minus default EVTP, points)")
    shown = [
        {
            "method": r["method"],
            "expressions": r["expressions"],
            **{m.name: cell(r[m.name]) for m in compared},
            **{f"vs evtp {m.name}": cell(r.get("versus_evtp", {}).get(m.name), "difference") for m in compared},
            **{f"p {m.name}": _p(r.get("versus_evtp", {}).get(m.name)) for m in compared},
            "grid_radius": r["grid_radius"],
        }
        for r in result["ablations"]
    ]
    columns = [c for c in shown[0] if c] if shown else ["method"]
    print(format_table(shown, columns))


def _p(comparison: dict | None) -> str:
    return "" if comparison is None else f"{comparison['p_value']:.4f}"


def verdict(sets: dict[str, dict], video: dict[str, bool]) -> list[str]:
    """Every EVTP comparison as it came out (overall and per target size), the tally, where EVTP did not win, the
    ablations against the default, and the pooled coverage correlations."""
    lines, tally, not_won = ["EVTP minus each baseline at the same keep (primary metric):"], {}, []
    for name, result in sets.items():
        primary = metrics_for(video[name])[1][0].name
        groups = [("all", result["paired"])]
        groups += [(f"{b} targets", part["paired"]) for b, part in result["by_size"]["bins"].items()]
        for scope, rows in groups:
            for r in (r for r in rows if r["metric"] == primary):
                text = f"{name} {scope} keep {r['keep']}: EVTP vs {r['versus']} {primary} {_difference(r)}"
                lines.append(f"  {text}")
                tally[r["outcome"]] = tally.get(r["outcome"], 0) + 1
                if r["outcome"] != "EVTP better":
                    not_won.append(text)
    total = sum(tally.values())
    summary = ", ".join(f"{v} {k}" for k, v in sorted(tally.items()))
    lines.append(f"tally over {total} comparisons: {summary or 'none'}")
    lines.append(f"EVTP does not win (significantly) in {len(not_won)} of {total}:")
    lines += [f"  {t}" for t in not_won] or ["  (none)"]
    lines.append("EVTP's ablations minus the default EVTP (a positive difference: the ablation is better):")
    for name, result in sets.items():
        primary = metrics_for(video[name])[1][0].name
        for r in (r for r in result["ablations"] if "versus_evtp" in r):
            lines.append(
                f"  {name} keep {r['keep']}: {r['method']} {primary} {_difference(r['versus_evtp'][primary])}"
            )
    lines.append("coverage against accuracy, pooled over keeps (rho < 0 supports 'quality tracks coverage'):")
    for name, result in sets.items():
        for r in (r for r in result["coverage"] if r["keep"] == "all"):
            lines.append(f"  {name} {r['method']} {r['radius']}: rho {rho_cell(r['rho'])}: {r['verdict']}")
    return lines


def _difference(r: dict) -> str:
    return f"{r['difference']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}] p={r['p_value']:.4f}: {r['outcome']}"


def clean(value):
    """JSON-ready: NaN to null, numpy scalars to Python, tuple keys to text."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------------ plots


def plot_keep(sets: dict, plan: Plan, video: dict[str, bool], path: Path) -> Path:
    """Accuracy against keep per method, error bars = the bootstrap intervals, none as a dashed line."""
    return _plot(
        sets, plan, video, path, x_of=lambda method, keep: keep, x_label="keep ratio", spread=0.02, keep_axis=True
    )


def plot_speedup(sets: dict, plan: Plan, video: dict[str, bool], speedups: dict, path: Path) -> Path:
    """Accuracy against the end-to-end FLOP speed-up at HyperSeg-3B size, one series per method."""

    def x_of(method: str, keep: float) -> float | None:
        return speedup(speedups, method, keep)

    label = "end-to-end FLOP speed-up against keep 1 (HyperSeg-3B, one image)"
    return _plot(sets, plan, video, path, x_of=x_of, x_label=label, spread=0.003, keep_axis=False)


def _plot(
    sets: dict, plan: Plan, video: dict[str, bool], path: Path, *, x_of, x_label: str, spread: float, keep_axis: bool
) -> Path:
    """One panel per set; ``x_of(method, keep)`` places a run (None: not plotted), ``spread`` is the relative
    offset between methods sharing an x (small on the speed-up axis, where x is the quantity shown); the keep axis
    is logarithmic with a tick per keep, and has no ``none`` point (its line is the reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.8), squeeze=False)
    series = plan.methods if keep_axis else [UNPRUNED[0], *plan.methods]
    for ax, (name, result) in zip(axes[0], sets.items(), strict=True):
        metric = metrics_for(video[name])[1][0].name
        rows = {(r["method"], r["keep"]): r[metric] for r in result["accuracy"]}
        for i, method in enumerate(series):
            # Methods share their x (the same keep or speed-up): offset each a little so the bars stay apart.
            shift = 1 + spread * (i - (len(series) - 1) / 2)
            points = sorted((x_of(m, k), k, v) for (m, k), v in rows.items() if m == method and x_of(m, k))
            if not points:
                continue
            ys = np.array([[v["value"], v["value"] - v["low"], v["high"] - v["value"]] for _, _, v in points])
            style = {"color": "black", "marker": "s"} if method == UNPRUNED[0] else {"marker": "o"}
            xs = [x * (1 if method == UNPRUNED[0] else shift) for x, _, _ in points]
            ax.errorbar(xs, ys[:, 0], yerr=ys[:, 1:].T, capsize=3, label=method, **style)
            if method == REFERENCE and not keep_axis:
                for x, (_, keep, _), y in zip(xs, points, ys[:, 0], strict=True):
                    ax.annotate(f"keep {keep:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if UNPRUNED in rows:
            ref = rows[UNPRUNED]
            ax.axhline(ref["value"], color="black", linestyle="--", linewidth=1, label="none (keep 1.0)")
            ax.axhspan(ref["low"], ref["high"], color="grey", alpha=0.12)
        if keep_axis:  # keeps span 10x: log scale, ticks at the keeps
            ax.set_xscale("log")
            ax.set_xticks(plan.keeps, [f"{k:g}" for k in plan.keeps])
            ax.minorticks_off()
        ax.set_title(f"{name}: {'videos' if video[name] else 'images'} (points offset slightly by method)")
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{metric} (%), 95% cluster-bootstrap interval")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny end to end with random weights (the test)")
    parser.add_argument("--out", help=f"run folders (default {FULL['out']}; --quick: {QUICK['out']})")
    parser.add_argument("--data", help="synthetic data and shards (default: {out}/data)")
    parser.add_argument("--results", help="study.json and plots (default benchmarks/results; --quick: {out}/results)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help=f"the trained model folder (default {CHECKPOINT})")
    weights.add_argument("--preset", help="random weights instead (e.g. tiny; --quick's default), for dry runs")
    parser.add_argument("--datasets", default="refcoco,revos", help="comma-separated: refcoco, revos")
    parser.add_argument("--images", type=int, help=f"RefCOCO-style images (default {FULL['images']})")
    parser.add_argument("--videos", type=int, help=f"ReVOS-style videos (default {FULL['videos']})")
    parser.add_argument("--frames", type=int, help=f"frames per video (default {FULL['frames']})")
    parser.add_argument("--max-expressions", type=int, help="expressions per image or video at most (default 4)")
    parser.add_argument("--shard-samples", type=int, help="samples per shard: the unit a run resumes by")
    parser.add_argument(
        "--methods",
        help=f"main grid (default {FULL['methods']}; FastV ranks at LLM layer 2, so a 2-layer LLM such as the tiny "
        "preset's needs fastv:layer=1)",
    )
    parser.add_argument("--keeps", help=f"main grid keep ratios (default {FULL['keeps']}; sweep adds none at 1.0)")
    parser.add_argument("--ablations", help=f"EVTP variants, ':'-separated options (default {FULL['ablations']})")
    parser.add_argument("--ablation-keep", help=f"keep ratio of the ablations (default {FULL['ablation_keep']})")
    parser.add_argument("--rounds", type=int, help="bootstrap resamples (default 2000; --quick 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--size-threshold",
        default="median",
        help="small/large target split: 'median' of the set's target_area_fraction, or a fraction such as 0.02",
    )
    parser.add_argument("--flops", type=Path, default=FLOPS, help="the FLOP tables (benchmarks/flops.py output)")
    parser.add_argument("--analyse-only", action="store_true", help="no runs: analyse the run folders as they are")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick and not (args.preset or args.checkpoint):
        args.preset = "tiny"
    args.data = Path(args.data or f"{args.out}/data")
    args.results = Path(args.results or (f"{args.out}/results" if args.quick else RESULTS))
    return args


def build_plan(args: argparse.Namespace) -> Plan:
    model = args.preset or args.checkpoint or CHECKPOINT
    if not args.preset and not Path(model).is_dir():
        raise SystemExit(f"no checkpoint folder at {model}: train it (jobs/train.py) or pass --preset tiny")
    ablations = [a for a in args.ablations.split(",") if a]
    keeps = [keep_value(k) for k in args.keeps.split(",")]
    return Plan(model, args.methods.split(","), keeps, ablations, keep_value(args.ablation_keep))


def datasets(args: argparse.Namespace) -> list[DataSet]:
    known = {
        "refcoco": DataSet("refcoco", "val", args.images, args.max_expressions),
        "revos": DataSet("revos", "valid", args.videos, args.max_expressions, args.frames),
    }
    names = args.datasets.split(",")
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown datasets {unknown}; choose from {sorted(known)}")
    return [known[n] for n in names]


def describe(index: pd.DataFrame, dataset: DataSet) -> dict:
    expressions = len(index)
    target = TARGET_EXPRESSIONS[dataset.name]
    return {
        "layout": dataset.name,
        "split": dataset.split,
        "samples": int(index.sample_key.nunique()),
        "expressions": expressions,
        "target_expressions": target,
        "frames": dataset.frames,
        "max_expressions": dataset.max_expressions,
        "kinds": {str(k): int(v) for k, v in index.kind.value_counts().sort_index().items()},
        "families": {str(k): int(v) for k, v in index.family.value_counts().sort_index().items()},
        "target_area_fraction_median": float(index.target_area_fraction.median()),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = build_plan(args)
    settings = Settings(args.rounds, args.seed, args.size_threshold)
    sets, video, data_meta, missing = {}, {}, {}, {}
    for dataset in datasets(args):
        manifest, index = prepare_data(dataset, args.data, args.shard_samples)
        data_meta[dataset.name] = {**describe(index, dataset), "shards": manifest}
        if len(index) < TARGET_EXPRESSIONS[dataset.name] and not args.quick:
            print(f"WARNING: {dataset.name} has {len(index)} expressions, fewer than the study's target")
        output = f"{args.out}/sweep-{dataset.name}"
        if not args.analyse_only:
            run_sweeps(plan, manifest, output)
        runs, missing[dataset.name] = load_runs(plan, output, dataset.video)
        if not runs:
            print(f"{dataset.name}: no run folder to analyse under {output}")
            continue
        sets[dataset.name], video[dataset.name] = analyse(runs, index, plan, dataset.video, settings), dataset.video
    for name, result in sets.items():
        print_set(name, result, video[name])
    lines = verdict(sets, video)
    print("\n=== verdict: every EVTP comparison as it came out ===")
    print("\n".join(lines))
    args.results.mkdir(parents=True, exist_ok=True)
    plots = []
    if sets:
        plots.append(plot_keep(sets, plan, video, args.results / "study_keep.png"))
        plots.append(plot_speedup(sets, plan, video, flop_speedups(args.flops), args.results / "study_speedup.png"))
    report = {"meta": meta(args, plan, settings, data_meta, missing), "sets": sets, "verdict": lines}
    path = args.results / "study.json"
    path.write_text(json.dumps(clean(report), indent=1) + "\n")
    for written in [path, *plots]:
        print(f"wrote {written}")
    return 0


def meta(args: argparse.Namespace, plan: Plan, settings: Settings, data: dict, missing: dict) -> dict:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "quick": args.quick,
        "data": {"root": str(args.data), "sets": data},
        "runs": {
            "output": str(args.out),
            "model": plan.model,
            "model_label": plan.label,
            "weights": "random (preset)" if args.preset else "checkpoint",
            "methods": plan.methods,
            "keeps": plan.keeps,
            "unpruned": list(UNPRUNED),
            "ablations": plan.ablations,
            "ablation_keep": plan.ablation_keep,
            "folders": "{output}/sweep-{set}/{model}/{method-with-options}-{keep} (jobs/sweep.py --no-ray)",
            "missing": missing,
        },
        "analysis": {
            "rounds": settings.rounds,
            "level": LEVEL,
            "seed": settings.seed,
            "clusters": "sample_key: an image (refcoco) or a video (revos)",
            "units": "accuracy and differences in percent points; rho unitless",
            "images": "gIoU = mean over expressions of I/(U+1e-5), 1 where U = 0 (no +1e-5 on the count); "
            "cIoU = sum I / sum U",
            "videos": "J, F, J&F = means over expressions of the metrics table's j, f, jf, referring and reasoning "
            "pooled (not ReVOS's macro-average of the two categories)",
            "paired": "EVTP minus the other on the expressions both runs have; p = twice the smaller bootstrap tail "
            f"(resolution 1/{settings.rounds}); significant = the interval excludes 0; no multiple-comparison "
            "correction",
            "size_split": f"small: target_area_fraction < threshold, large: >= threshold; rule {settings.size_rule}",
            "coverage": "Spearman rho of the radius (mean over the expression's frames; FastV: its own rows) and "
            "the per-expression IoU (images) or J (videos); a larger radius is worse coverage, so rho < 0 "
            "supports 'quality tracks coverage'",
            "speedup": "flops.json hyperseg-3b image table: speedup_vs_keep1, FastV from its variant (counted at its "
            "layer there, 2, whatever a run's layer option); every other method is charged EVTP's selection FLOPs "
            "(under 0.02% of the total)",
            "flops": str(args.flops),
        },
    }


if __name__ == "__main__":
    sys.exit(main())
