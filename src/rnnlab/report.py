"""Sweep results to tables and plots.

    python -m rnnlab.report PATH [--out DIR] [--html] [--publish]

``PATH`` is a run folder or any folder above run folders (a sweep, or ``multirun/``). Writes
into ``--out`` (default: ``PATH``):

* ``results.csv``: one row per run: its folder (``run``), the folder holding it (``sweep``),
  its Hydra ``overrides``, cell, task, sizes, status, each final metric's mean, std, min,
  median and max over seeds, the baselines, ``num_seeds`` and ``seeds_solved`` (how many met
  the task's criterion), gradient half-lives (``inf``: no decay);
* ``report.md``: the table per task (cells and baselines side by side; where runs come from
  several sweeps or settings, the columns ``sweep`` and ``settings`` say which), the half-life
  table, the figures;
* ``gradient_flow_<task>.png``: log ``||dL/dh_t||`` against ``t`` for each cell, at
  initialisation and after training (first layer, seed mean, one line per run);
* ``metric_vs_length_<task>.png`` when a task was run at several lengths: the first metric
  against the sequence length per cell, with the baseline;
* with ``--html``, ``report.html``: the same report as one self-contained page (figures
  embedded, tables sortable by a click on a header; no network, no server;
  :mod:`rnnlab.report_html`).

Forecast runs (``task=forecast``) get, instead of the task table, one table per data set: the
test-span RMSE, MAE, MASE and sMAPE in the series' own units of every run (mean ± std over its
seeds and rolling-origin folds, from ``summary["forecast"]``) beside every baseline on the
same windows (naive, seasonal naive, drift, mean, AutoETS, AutoARIMA, AutoTheta, AR(p); mean
± std over folds), the best baseline named, each run's skill score against it and whether
the gap is larger than its spread over seeds and folds; and ``forecast_<data set>.png``, the
best run's test-span forecasts (its last fold) against the truth and the naive forecast
(:mod:`rnnlab.forecast.plots`). On a single run folder these land in that folder.

``--publish`` also creates a W&B report with the same panels when W&B is online (logged in,
network reachable); offline it says so and skips.
"""

import argparse
import json
import netrc
import os
import re
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rnnlab.forecast.plots import SERIES_KEY, forecast_figure
from rnnlab.plots import log_curve, read_gradients, zero_legend_entry
from rnnlab.report_html import html_report

FORECAST_METRICS = ("rmse", "mae", "mase", "smape")  # overall test-span metrics, in units
# config fields recorded per run (besides every scalar task field), to tell variants apart
RUN_FIELDS = (("model", ("param_budget", "num_layers", "bidirectional", "dropout")),
              ("optim", ("name", "learning_rate")),
              ("train", ("steps", "batch_size", "early_stopping_patience")))


def unfinished_jobs(path: Path) -> list[Path]:
    """Job folders (Hydra's ``.hydra/`` inside) at or below ``path`` without a
    ``summary.json``: still running, or killed."""
    return sorted(p.parent for p in Path(path).rglob(".hydra")
                  if p.is_dir() and not (p.parent / "summary.json").exists())


def find_runs(path: Path) -> list[Path]:
    """Run folders (those with a ``summary.json``) at or below ``path``, sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such run or sweep folder: {path}")
    runs = sorted(p.parent for p in path.rglob("summary.json"))
    if not runs:
        raise FileNotFoundError(f"no run folders (with summary.json) under {path}")
    return runs


def _task_fields(run: Path) -> dict:
    cfg_path = run / "config.yaml"
    if not cfg_path.exists():
        return {}
    import yaml

    cfg = yaml.safe_load(cfg_path.read_text()) or {}
    task = cfg.get("task", {})
    out = {f"task.{k}": v for k, v in task.items() if k != "name" and not isinstance(v, list)}
    for group, keys in RUN_FIELDS:
        node = cfg.get(group) or {}
        out.update({f"{group}.{k}": node.get(k) for k in keys})
    return out


def _forecast_fields(summary: dict, task_fields: dict) -> dict:
    """Test-span metrics of a forecast run: ``test_<metric>_mean``/``_std`` over the live
    seeds and ``test_baseline_<name>_<metric>``; ``dataset`` and ``target`` name the series."""
    forecast = summary.get("forecast")
    if not forecast:
        return {}
    path = task_fields.get("task.path")
    row = {"dataset": Path(path).stem if path else task_fields.get("task.dataset"),
           "target": (forecast.get(SERIES_KEY) or {}).get("target", task_fields.get(
               "task.target")),
           "test_windows": forecast.get("windows")}
    live = [m for m in forecast.get("per_seed", []) if m]
    for metric in FORECAST_METRICS:
        values = np.array([m[metric] for m in live if m.get(metric) is not None], float)
        values = values[np.isfinite(values)]
        row[f"test_{metric}_mean"] = float(values.mean()) if values.size else np.nan
        row[f"test_{metric}_std"] = float(values.std()) if values.size else np.nan
    spread = forecast.get("baselines_std", {})
    for name, metrics in forecast.get("baselines", {}).items():
        for metric in FORECAST_METRICS:
            row[f"test_baseline_{name}_{metric}"] = metrics.get(metric)
            row[f"test_spread_{name}_{metric}"] = spread.get(name, {}).get(metric)
    c = forecast.get("comparison", {})
    row.update({"test_folds": forecast.get("folds", 1),
                "test_best_baseline": c.get("best_baseline"), "test_skill": c.get("skill"),
                "test_difference_mean": c.get("difference_mean"),
                "test_difference_std": c.get("difference_std"),
                "test_beyond_spread": c.get("beyond_spread")})
    return row


def _length(row) -> int:
    """The task's T (its ``length`` field) where it has one, else the sequence length."""
    value = row.get("task.length")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        value = row["sequence_length"]
    return int(value)


def _overrides(run: Path) -> list[str]:
    """The command-line overrides Hydra recorded for the run (``.hydra/overrides.yaml``)."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    import yaml

    return [str(o) for o in (yaml.safe_load(path.read_text()) or [])]


def _sweep_name(run: Path, root: Path | None) -> str:
    """The folder holding the run, relative to the report's root (``.`` for the root)."""
    if root is None:
        return run.parent.name
    try:
        rel = run.parent.relative_to(root)
    except ValueError:
        return run.parent.name
    return str(rel) if str(rel) != "." else (root.name if run != root else ".")


def _gradient_value(summary_grads: dict, key: str, value):
    """A half-life as a float: ``null`` with ``decays = false`` is ``inf`` (no decay); an
    older summary's string ``"inf"`` too."""
    if value == "inf":
        return np.inf
    if value is None and key.endswith("/half_life"):
        decays = summary_grads.get(key[: -len("half_life")] + "decays")
        return np.inf if decays is False else np.nan
    return value


def results_table(runs: list[Path], root: Path | None = None) -> pd.DataFrame:
    """One row per run folder; ``sweep`` is the folder holding it (relative to ``root``),
    ``overrides`` its Hydra overrides, ``num_seeds`` its seeds, ``seeds_solved`` how many of
    them met the task's "solved" criterion (the task's own metrics keep their names, e.g. the
    adding task's ``solved_fraction_mean``)."""
    rows = []
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        row = {"run": str(run), "sweep": _sweep_name(run, root),
               "overrides": " ".join(_overrides(run)),
               "status": s.get("status"), "error": s.get("error")}
        row.update({k: s.get(k) for k in ("cell", "task", "sequence_length", "param_count",
                                          "seeds_solved", "steps_run", "train_seconds")})
        row["hidden_sizes"] = ",".join(map(str, s.get("hidden_sizes", []))) or None
        row["num_seeds"] = len(s.get("seeds", []))
        if row["seeds_solved"] is None and s.get("solved_fraction") is not None:
            # summaries written before the rename kept the share of seeds
            row["seeds_solved"] = round(s["solved_fraction"] * row["num_seeds"])
        task_fields = _task_fields(run)
        row.update(task_fields)
        for metric, stats in s.get("final", {}).items():
            for stat, value in stats.items():
                row[f"{metric}_{stat}"] = value
        for metric, value in s.get("baselines", {}).items():
            row[f"baseline_{metric}"] = value
        grads = s.get("gradients", {})
        for key, value in grads.items():
            if not key.endswith("/decays"):
                row[f"grad_{key}"] = _gradient_value(grads, key, value)
        if row.get("sequence_length") is not None:
            row["T"] = _length(row)
        row.update(_forecast_fields(s, task_fields))
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "—"
    return f"{mean:.4g} ± {std:.2g}"


# ---- forecast tables ------------------------------------------------------------------------
# runs share a table when they forecast the same windows of the same series (same baselines)
SPAN_FIELDS = ("dataset", "target", "task.horizon", "task.val_fraction", "task.test_fraction",
               "task.val_start", "task.test_start", "task.folds")
METRIC_NAMES = {"rmse": "RMSE", "mae": "MAE", "mase": "MASE", "smape": "sMAPE (%)"}


def forecast_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The finished forecast runs (those with test-span metrics)."""
    if "test_rmse_mean" not in df or "dataset" not in df:
        return df.iloc[0:0]
    return df[(df["status"] == "ok") & df["dataset"].notna()]


def forecast_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(name, runs)`` per table: one per data set, named by it (``goog``), or, where one data
    set was forecast in several ways, per target and test span, named by what differs
    (``goog target=High``, ``goog target=Close test_fraction=0.23``)."""
    runs = forecast_runs(df)
    fields = [f for f in SPAN_FIELDS if f in runs]
    groups = [g for _, g in runs.groupby(fields, dropna=False, sort=True)]
    out = []
    for g in groups:
        dataset = g["dataset"].iloc[0]
        same = [h.iloc[0] for h in groups if h["dataset"].iloc[0] == dataset]
        differ = [f for f in fields[1:] if len({str(r[f]) for r in same}) > 1]
        name = " ".join([str(dataset),
                         *(f"{f.split('.')[-1]}={_option(g[f].iloc[0])}" for f in differ)])
        out.append((name, g))
    return out


def _option(value) -> str:
    """A config value as written in a title: a whole number that pandas turned into a float
    (a column with missing values) without its ``.0`` (``copy_length=3``, not ``3.0``)."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def _variant_columns(g: pd.DataFrame) -> list[str]:
    """Config fields that differ between the runs of one table (besides cell and widths)."""
    skip = {*SPAN_FIELDS, "hidden_sizes"}
    cols = [c for c in g.columns if c.split(".")[0] in ("task", "model", "optim", "train")
            and c not in skip]
    return [c for c in cols if g[c].astype(str).nunique(dropna=False) > 1]


def _variant_label(row, columns: list[str]) -> str:
    extra = " ".join(f"{c.split('.', 1)[1]}={_option(row[c])}" for c in columns)
    return f"{row['cell']} {extra}".strip()


def _baselines(g: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for col in g.columns:
        if not col.startswith("test_baseline_") or not g[col].notna().any():
            continue
        name, metric = col[len("test_baseline_"):].rsplit("_", 1)
        out.setdefault(name, {})[metric] = float(g[col].dropna().iloc[0])
    return out


def _baseline_spread(g: pd.DataFrame, name: str) -> dict[str, float]:
    out = {}
    for m in FORECAST_METRICS:
        col = f"test_spread_{name}_{m}"
        if col in g and g[col].notna().any():
            out[m] = float(g[col].dropna().iloc[0])
    return out


def _beyond_spread(row) -> str:
    """``yes, network better`` / ``yes, network worse`` / ``no`` / ``—`` (one pair: no
    spread): the side is named, so the verdict reads right even where the skill score is
    undefined (a best baseline with zero error)."""
    beyond, diff = row.get("test_beyond_spread"), row.get("test_difference_mean")
    if beyond is True or beyond == 1.0:
        side = "better" if diff is not None and diff < 0 else "worse"
        return f"yes, network {side}"
    return "no" if beyond is False or beyond == 0.0 else "—"


def forecast_table(name: str, g: pd.DataFrame,
                   figure: str | list[str] | None = None) -> list[str]:
    """Markdown lines: the runs (mean ± std over seeds) and the baselines, best in bold."""
    variant = _variant_columns(g)
    g = g.sort_values("test_rmse_mean", na_position="last")
    base = _baselines(g)
    best = {}
    for m in FORECAST_METRICS:
        values = [*g[f"test_{m}_mean"].dropna(), *(b[m] for b in base.values()
                                                   if m in b and np.isfinite(b[m]))]
        best[m] = min(values) if values else None
    r0 = g.iloc[0]
    n = int(r0["test_windows"])
    folds = int(r0.get("test_folds", 1) or 1) if "test_folds" in g else 1
    spread = "over each run's seeds" if folds == 1 else "over each run's folds and seeds"
    lines = [f"## forecast: {name}", "",
             f"Test span of `{r0['dataset']}` ({r0['target']}): {n} window"
             f"{'s' if n != 1 else ''}" + (f" over {folds} rolling origins (folds)"
                                          if folds > 1 else "")
             + f", horizon {int(r0.get('task.horizon', 1))}; errors in the series' units, mean "
             f"± std {spread}; the baselines (fitted on each fold's training span) forecast the "
             f"same windows, ± their std over folds. Best in bold.", ""]
    best_name = r0.get("test_best_baseline") if "test_best_baseline" in g else None
    has_skill = isinstance(best_name, str)
    if has_skill:
        b = base.get(best_name, {})
        lines += [f"Best baseline (lowest mean RMSE): **{best_name}** "
                  f"({b.get('rmse', np.nan):.4g}). Skill = 1 − network RMSE / {best_name} "
                  f"RMSE (> 0: the network is better; — where {best_name}'s RMSE is 0); "
                  f"beyond spread: whether the mean paired difference (network − {best_name}, "
                  f"per fold and seed) is larger than its std over folds and seeds, and which "
                  f"side is better.", ""]
    # the validation MASE of the final weights: what sweeps and Optuna rank forecast runs by
    has_val = "val_mase_mean" in g and g["val_mase_mean"].notna().any()
    if has_val:
        lines += ["val MASE: the validation windows' MASE of each run's final weights, the "
                  "metric sweeps and Optuna rank forecast runs by (the naive forecast's beside "
                  "it).", ""]
    sweeps = "sweep" in g and g["sweep"].nunique() > 1  # rows from several sweeps: say which
    header = ["model", *(["sweep"] if sweeps else []), "widths", "params", "seeds", "steps run",
              *(["val MASE"] if has_val else []),
              *(METRIC_NAMES[m] for m in FORECAST_METRICS),
              *(["skill", "beyond spread"] if has_skill else [])]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]

    def cell(m, value, text):
        return f"**{text}**" if best[m] is not None and value == best[m] else text

    for _, r in g.iterrows():
        vals = [cell(m, r[f"test_{m}_mean"], _fmt(r[f"test_{m}_mean"], r[f"test_{m}_std"]))
                for m in FORECAST_METRICS]
        if has_skill:
            skill = r.get("test_skill")
            vals += [f"{skill:+.3f}" if skill is not None and np.isfinite(skill) else "—",
                     _beyond_spread(r)]
        val = [_fmt(r.get("val_mase_mean"), r.get("val_mase_std"))] if has_val else []
        lines.append(f"| {_variant_label(r, variant)} | "
                     + (f"{r['sweep']} | " if sweeps else "") + f"{r['hidden_sizes']} | "
                     f"{int(r['param_count']):,} | {int(r['num_seeds'])} | "
                     f"{int(r['steps_run'])} | " + " | ".join(val + vals) + " |")
    for bname, metrics in sorted(base.items(), key=lambda kv: kv[1].get("rmse", np.inf)):
        sd = _baseline_spread(g, bname) if folds > 1 else {}
        vals = [cell(m, metrics.get(m), f"{metrics[m]:.4g}" + (
                    f" ± {sd[m]:.2g}" if sd.get(m) is not None and np.isfinite(sd[m]) else ""))
                if m in metrics and np.isfinite(metrics[m]) else "—" for m in FORECAST_METRICS]
        if has_skill:
            vals += ["", ""]
        if has_val:
            naive = g["baseline_val_mase"].dropna() if "baseline_val_mase" in g else []
            vals = [f"{naive.iloc[0]:.4g}" if bname == "naive" and len(naive) else "", *vals]
        lines.append(f"| baseline: {bname} | | | | | " + ("| " if sweeps else "")
                     + " | ".join(vals) + " |")
    lines.append("")
    for fig in [figure] if isinstance(figure, str) else (figure or []):
        what = ("gradient norm through time per run" if fig.startswith("gradient_flow")
                else "best run vs truth and naive on the test span")
        lines += [f"![{name}: {what}]({fig})", ""]
    return lines


def best_forecast_figure(name: str, g: pd.DataFrame, path: Path) -> bool:
    """Draws the test-span forecasts of the run with the lowest mean RMSE in ``g``."""
    variant = _variant_columns(g)
    for _, r in g.sort_values("test_rmse_mean").iterrows():
        summary = json.loads((Path(r["run"]) / "summary.json").read_text())
        series = summary.get("forecast", {}).get(SERIES_KEY)
        if not series or not any(p is not None for p in series["per_seed"]):
            continue
        naive = r.get("test_baseline_naive_rmse")
        title = (f"{name} ({r['target']}), test span: best run {_variant_label(r, variant)} "
                 f"{r['hidden_sizes']} RMSE {r['test_rmse_mean']:.4g}"
                 + (f", naive RMSE {naive:.4g}" if naive is not None and np.isfinite(naive)
                    else ""))
        forecast_figure(series, path, title=textwrap.fill(title, 110),
                        label=textwrap.shorten(_variant_label(r, variant), 60))
        return True
    return False


def _task_variants(df: pd.DataFrame):
    """``(title, rows)`` per task, split further by any task option other than ``length`` that
    differs between its runs (e.g. ``timed_spikes (mode=gts)``)."""
    for task, g in df.groupby("task"):
        varying = [c for c in g.columns if c.startswith("task.") and c != "task.length"
                   and g[c].nunique(dropna=False) > 1]
        if not varying:
            yield task, g
            continue
        for values, gv in g.groupby(varying, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            opts = ", ".join(f"{c[5:]}={_option(v)}" for c, v in zip(varying, values,
                                                                        strict=True))
            yield f"{task} ({opts})", gv


def _half_life_text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return "no decay" if np.isinf(value) else f"{value:.3g}"


IDENTITY_OVERRIDES = ("cell", "task")  # shown in their own columns
# overrides that change how a run is logged, not its results
QUIET_OVERRIDES = ("logger.", "hydra.", "train.log_every", "gradients.")


def run_labels(g: pd.DataFrame) -> pd.DataFrame:
    """What tells the runs of one table apart besides cell and T: ``sweep`` (empty when all
    come from one folder) and ``settings``: the overrides not shared by every run of the table
    (``task.length`` and the cell left out), or, for runs without recorded overrides, the
    config fields that differ."""
    out = pd.DataFrame(index=g.index, columns=["sweep", "settings"], dtype=object)
    out["sweep"] = g["sweep"] if "sweep" in g and g["sweep"].nunique() > 1 else ""

    def keyed(text: str) -> dict[str, str]:
        pairs = (o.split("=", 1) for o in str(text or "").split() if "=" in o)
        return {k: v for k, v in pairs
                if k.lstrip("+~") not in (*IDENTITY_OVERRIDES, "task.length")
                and not k.lstrip("+~").startswith(QUIET_OVERRIDES)}

    overrides = {i: keyed(g.at[i, "overrides"]) if "overrides" in g else {} for i in g.index}
    keys = sorted({k for o in overrides.values() for k in o})
    differ = [k for k in keys if len({o.get(k) for o in overrides.values()}) > 1]
    fields = [c for c in _variant_columns(g) if c not in ("task.length",)
              and not any(k.lstrip("+~") == c for k in differ)]
    for i in g.index:
        parts = [f"{k}={overrides[i][k]}" for k in differ if k in overrides[i]]
        parts += [f"{c}={g.at[i, c]}" for c in fields]
        out.at[i, "settings"] = " ".join(parts)
    return out


def markdown(df: pd.DataFrame, figures: dict[str, str] | None = None) -> str:
    """The report: a table per task (cells and baselines side by side), gradient half-lives,
    a table per forecast data set (:func:`forecast_table`; ``figures`` maps its name to the
    figure file shown under it, ``task:NAME`` the figures of a task), and the failed runs."""
    figures = dict(figures or {})
    ok = df[df["status"] == "ok"]
    failed = df[df["status"] != "ok"]
    folders = df["sweep"].nunique() if "sweep" in df else 1
    lines = ["# rnnlab report", "",
             f"{len(df)} run{'s' if len(df) != 1 else ''} ({len(ok)} finished, {len(failed)} "
             f"failed) from {folders} folder{'s' if folders != 1 else ''}; every number is the "
             f"mean ± std over a run's seeds unless marked as a baseline.", ""]
    ok = ok.drop(index=forecast_runs(df).index)  # forecast runs get their own tables
    metrics = sorted({c[: -len("_mean")] for c in df.columns if c.endswith("_mean")
                      and not c.startswith("test_")})
    for task, g in _task_variants(ok):
        lines += [f"## {task}", ""]
        shown = [m for m in metrics if f"{m}_mean" in g and g[f"{m}_mean"].notna().any()]
        ids = run_labels(g)
        id_cols = [c for c in ("sweep", "settings") if ids[c].astype(bool).any()]
        header = ["cell", "T", *id_cols, "seeds", "params",
                  *[f"{m} (mean ± std over seeds)" for m in shown], "seeds solved"]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for i, r in g.sort_values(["T", "cell", "sweep"]).iterrows():
            vals = [_fmt(r[f"{m}_mean"], r.get(f"{m}_std")) for m in shown]
            solved = ("—" if pd.isna(r.get("seeds_solved"))
                      else f"{int(r['seeds_solved'])}/{int(r['num_seeds'])}")
            lines.append(f"| {r['cell']} | {_length(r)} | "
                         + "".join(f"{ids.at[i, c]} | " for c in id_cols)
                         + f"{int(r['num_seeds'])} | {int(r['param_count']):,} | "
                         + " | ".join(vals) + f" | {solved} |")
        pad = "| " * (len(id_cols) + 2)
        shown = [m for m in metrics if f"{m}_mean" in g and g[f"{m}_mean"].notna().any()]
        base_cols = {m: f"baseline_{m}" for m in shown
                     if f"baseline_{m}" in g and g[f"baseline_{m}"].notna().any()}
        if base_cols:
            # a baseline that depends on T (the copy task's loss) is listed per T
            for T, gT in g.groupby("T") if any(g[c].nunique() > 1 for c in base_cols.values()) \
                    else [(None, g)]:
                label = "baseline" if T is None else f"baseline (T={T})"
                lines.append(f"| {label} | | {pad}" + " | ".join(
                    f"{gT[base_cols[m]].iloc[0]:.4g}" if m in base_cols else "—" for m in shown)
                    + " | |")
        lines.append("")
        hl = [c for c in g.columns if c.startswith("grad_") and c.endswith("/h/half_life")
              and g[c].notna().any()]
        if hl:
            lines += ["Gradient half-life in steps (ln 2 / decay rate of ||dL/dh_t||; no "
                      "decay: the norm does not shrink with the distance):", "",
                      "| cell | T | " + "".join(f"{c} | " for c in id_cols)
                      + " | ".join(c[5:] for c in hl) + " |",
                      "|" + " --- |" * (len(hl) + 2 + len(id_cols))]
            for i, r in g.sort_values(["T", "cell", "sweep"]).iterrows():
                lines.append(f"| {r['cell']} | {_length(r)} | "
                             + "".join(f"{ids.at[i, c]} | " for c in id_cols)
                             + " | ".join(_half_life_text(r[c]) for c in hl) + " |")
            lines.append("")
        for fig in (figures or {}).pop(f"task:{task.split(' (')[0]}", []):
            lines += [f"![{task}: {fig.rsplit('.', 1)[0].replace('_', ' ')}]({fig})", ""]
    for name, g in forecast_groups(df):
        lines += forecast_table(name, g, (figures or {}).get(name))
    if len(failed):
        lines += ["## Failed runs", ""]
        lines += [f"- `{r['run']}`: {r['error']}" for _, r in failed.iterrows()]
    return "\n".join(lines) + "\n"


def line_labels(runs: pd.DataFrame) -> pd.Series:
    """One label per run for a figure's lines across sequence lengths: the cell, with the
    settings that tell its runs apart besides T (:func:`run_labels`: e.g. two LSTM variants
    of one sweep get two lines, not one line zig-zagging between them)."""
    ids = run_labels(runs)
    extra = (ids["sweep"].astype(str) + " " + ids["settings"].astype(str)).str.strip()
    return runs["cell"].astype(str) + extra.map(lambda e: f" ({e})" if e else "")


def gradient_flow_figure(df: pd.DataFrame, task: str, path: Path, layer: str = "layer_0/h"):
    """log ||dL/dh_t|| vs t per cell (and setting: :func:`line_labels`), at init (left) and
    after training (right)."""
    runs = df[(df["task"] == task) & (df["status"] == "ok")]
    curves = []
    labels = line_labels(runs) if len(runs) else pd.Series(dtype=object)
    for i, r in runs.iterrows():
        g = read_gradients(r["run"])
        if g is None or f"{layer}/mean" not in g:
            continue
        curves.append((labels[i], r, g))
    if not curves:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colors = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(sorted(labels.unique()))}
    zeros = 0
    for lab, r, g in curves:
        mean = g[f"{layer}/mean"]
        for ax, m, when in ((axes[0], 0, "initialisation"), (axes[1], -1, "after training")):
            with np.errstate(all="ignore"):
                y_T = np.nanmean(mean[m], axis=0)
            zeros += log_curve(ax, y_T, colors[lab], lw=1.3, label=f"{lab} (T={_length(r)})")
            ax.set_title(f"{task}: {when} (step {int(g['steps'][m])})", fontsize=9)
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"||dL/d{layer.split('/')[-1]}_t|| ({layer}, seed mean)")
    handles, labels = axes[1].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    if zeros:
        handle, label = zero_legend_entry()
        uniq[label] = handle
    axes[1].legend(uniq.values(), uniq.keys(), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def metric_vs_length_figure(df: pd.DataFrame, task: str, path: Path, metric: str):
    runs = df[(df["task"] == task) & (df["status"] == "ok")]
    if runs["T"].nunique() < 2 or f"{metric}_mean" not in runs:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, g in runs.groupby(line_labels(runs)):
        g = g.sort_values("T")
        ax.errorbar(g["T"], g[f"{metric}_mean"], yerr=g[f"{metric}_std"],
                    marker="o", capsize=3, label=label)
    if f"baseline_{metric}" in runs:
        b = runs.sort_values("T")
        ax.plot(b["T"], b[f"baseline_{metric}"], "k--", label="baseline")
    ax.set_xscale("log")
    ax.set_xlabel("T (the task's length)")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title(task)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


PRIMARY_METRIC = {"copy": "accuracy", "adding": "mse", "temporal_order": "accuracy",
                  "selective_copy": "accuracy", "associative_recall": "accuracy"}


def make_report(path: Path, out: Path | None = None, html: bool = False) -> dict[str, Path]:
    """Writes ``results.csv``, ``report.md``, the figures and, with ``html``,
    ``report.html`` (:func:`html_report`) into ``out``; returns ``{name: path}``."""
    path = Path(path)
    out = Path(out) if out is not None else (path if path.is_dir() else path.parent)
    out.mkdir(parents=True, exist_ok=True)
    df = results_table(find_runs(path), root=path)
    written = {"results": out / "results.csv", "report": out / "report.md"}
    df.to_csv(written["results"], index=False)
    figures: dict[str, list[str]] = {}
    groups = forecast_groups(df)
    for name, g in groups:
        p = out / f"forecast_{_slug(name)}.png"
        if best_forecast_figure(name, g, p):
            written[f"forecast_{_slug(name)}"] = p
            figures.setdefault(name, []).append(p.name)
    forecasts = forecast_runs(df)
    for task in sorted(df["task"].dropna().unique()):
        if task in set(forecasts["task"]):  # one gradient figure per data set
            for name, g in groups:
                p = out / f"gradient_flow_{task}_{_slug(name)}.png"
                if gradient_flow_figure(g, task, p):
                    written[f"gradient_flow_{task}_{_slug(name)}"] = p
                    figures.setdefault(name, []).append(p.name)
            continue
        p = out / f"gradient_flow_{task}.png"
        if gradient_flow_figure(df, task, p):
            written[f"gradient_flow_{task}"] = p
            figures.setdefault(f"task:{task}", []).append(p.name)
        metric = PRIMARY_METRIC.get(task, "loss")
        p = out / f"metric_vs_length_{task}.png"
        if metric_vs_length_figure(df, task, p, metric):
            written[f"metric_vs_length_{task}"] = p
            figures.setdefault(f"task:{task}", []).append(p.name)
    text = markdown(df, figures)
    unfinished = unfinished_jobs(path)
    if unfinished:
        text += ("\n## Jobs without a summary\n\nStill running, or killed before they ended "
                 "(rerun the sweep into its folder to resume them):\n\n"
                 + "".join(f"- `{p}`\n" for p in unfinished))
    written["report"].write_text(text)
    if html:
        written["html"] = out / "report.html"
        written["html"].write_text(html_report(text, out, title=f"rnnlab report: {path}"))
    return written


def _wandb_api_key() -> str | None:
    """The W&B key from ``WANDB_API_KEY`` or ``~/.netrc`` (what ``wandb login`` writes)."""
    key = os.environ.get("WANDB_API_KEY")
    if key:
        return key
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError):
        return None
    return auth[2] if auth else None


PUBLISH_TIMEOUT = 15.0  # seconds to wait for the W&B server when publishing


def publish(written: dict[str, Path], project: str = "rnnlab") -> str:
    """Publishes the report's figures and table to W&B when it is online; otherwise says why
    it skipped, without touching the network."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return f"W&B report skipped: WANDB_MODE={os.environ['WANDB_MODE']}"
    if _wandb_api_key() is None:
        return "W&B report skipped: not logged in (no WANDB_API_KEY, no `wandb login`)"
    try:
        import wandb

        print(f"[rnnlab] W&B online: contacting the server to publish the report (waiting at "
              f"most {PUBLISH_TIMEOUT:g} s)", file=sys.stderr, flush=True)
        run = wandb.init(project=project, job_type="report", mode="online",
                         settings=wandb.Settings(init_timeout=PUBLISH_TIMEOUT, silent=True))
        run.log({name: wandb.Image(str(p)) for name, p in written.items()
                 if p.suffix == ".png"})
        run.log({"results": wandb.Table(dataframe=pd.read_csv(written["results"]))})
        url = run.url
        run.finish()
        return f"W&B report published: {url}"
    except Exception as err:
        return f"W&B report skipped: W&B is unreachable ({type(err).__name__}: {err})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnlab.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a run folder or a folder above run folders")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: path)")
    parser.add_argument("--publish", action="store_true", help="also publish to W&B if online")
    parser.add_argument("--html", action="store_true",
                        help="also write report.html: one self-contained page (figures "
                             "embedded, sortable tables; no network, no server)")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        print(f"rnnlab.report: --out {args.out} is a file; give a folder (made if missing)",
              file=sys.stderr)
        return 2
    try:
        written = make_report(args.path, args.out, html=args.html)
    except FileNotFoundError as err:
        print(f"rnnlab.report: {err}", file=sys.stderr)
        return 2
    for name, p in written.items():
        print(f"{name}: {p}")
    if args.publish:
        print(publish(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
