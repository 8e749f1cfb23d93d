"""Sweep results to tables and plots.

    python -m rnnlab.report PATH [--out DIR] [--publish]

``PATH`` is a run folder or any folder above run folders (a sweep, or ``multirun/``). Writes
into ``--out`` (default: ``PATH``):

* ``results.csv``: one row per run: cell, task, sizes, status, each final metric's mean, std,
  min, median and max over seeds, the baselines, the solved fraction, gradient half-lives;
* ``report.md``: the table per task (cells and baselines side by side) and the half-life table;
* ``gradient_flow_<task>.png``: log ``||dL/dh_t||`` against ``t`` for each cell, at
  initialisation and after training (first layer, seed mean, one line per run);
* ``metric_vs_length_<task>.png`` when a task was run at several lengths: the first metric
  against the sequence length per cell, with the baseline.

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
from rnnlab.plots import read_gradients

FORECAST_METRICS = ("rmse", "mae", "mase", "smape")  # overall test-span metrics, in units
# config fields recorded per run (besides every scalar task field), to tell variants apart
RUN_FIELDS = (("model", ("param_budget", "num_layers", "bidirectional", "dropout")),
              ("optim", ("name", "learning_rate")),
              ("train", ("steps", "batch_size", "early_stopping_patience")))


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


def results_table(runs: list[Path]) -> pd.DataFrame:
    rows = []
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        row = {"run": str(run), "status": s.get("status"), "error": s.get("error")}
        row.update({k: s.get(k) for k in ("cell", "task", "sequence_length", "param_count",
                                          "solved_fraction", "steps_run", "train_seconds")})
        row["hidden_sizes"] = ",".join(map(str, s.get("hidden_sizes", []))) or None
        row["num_seeds"] = len(s.get("seeds", []))
        task_fields = _task_fields(run)
        row.update(task_fields)
        for metric, stats in s.get("final", {}).items():
            for stat, value in stats.items():
                row[f"{metric}_{stat}"] = value
        for metric, value in s.get("baselines", {}).items():
            row[f"baseline_{metric}"] = value
        for key, value in s.get("gradients", {}).items():
            row[f"grad_{key}"] = np.inf if value == "inf" else value
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
        name = " ".join([str(dataset), *(f"{f.split('.')[-1]}={g[f].iloc[0]}" for f in differ)])
        out.append((name, g))
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def _variant_columns(g: pd.DataFrame) -> list[str]:
    """Config fields that differ between the runs of one table (besides cell and widths)."""
    skip = {*SPAN_FIELDS, "hidden_sizes"}
    cols = [c for c in g.columns if c.split(".")[0] in ("task", "model", "optim", "train")
            and c not in skip]
    return [c for c in cols if g[c].astype(str).nunique(dropna=False) > 1]


def _variant_label(row, columns: list[str]) -> str:
    extra = " ".join(f"{c.split('.', 1)[1]}={row[c]}" for c in columns)
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


def forecast_table(name: str, g: pd.DataFrame, figure: str | None = None) -> list[str]:
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
             + f", horizon {r0.get('task.horizon', 1)}; errors in the series' units, mean ± "
             f"std {spread}; the baselines (fitted on each fold's training span) forecast the "
             f"same windows, ± their std over folds. Best in bold.", ""]
    best_name = r0.get("test_best_baseline") if "test_best_baseline" in g else None
    has_skill = isinstance(best_name, str)
    if has_skill:
        b = base.get(best_name, {})
        lines += [f"Best baseline (lowest mean RMSE): **{best_name}** "
                  f"({b.get('rmse', np.nan):.4g}). Skill = 1 − network RMSE / {best_name} "
                  f"RMSE (> 0: the network is better); beyond spread: the mean paired "
                  f"difference (network − {best_name}, per fold and seed) is larger than its "
                  f"std over folds and seeds.", ""]
    header = ["model", "widths", "params", "seeds", "steps run",
              *(METRIC_NAMES[m] for m in FORECAST_METRICS),
              *(["skill", "beyond spread"] if has_skill else [])]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]

    def cell(m, value, text):
        return f"**{text}**" if best[m] is not None and value == best[m] else text

    for _, r in g.iterrows():
        vals = [cell(m, r[f"test_{m}_mean"], _fmt(r[f"test_{m}_mean"], r[f"test_{m}_std"]))
                for m in FORECAST_METRICS]
        if has_skill:
            skill, beyond = r.get("test_skill"), r.get("test_beyond_spread")
            vals += [f"{skill:+.3f}" if skill is not None and np.isfinite(skill) else "—",
                     {True: "yes", False: "no"}.get(beyond, "—")]
        lines.append(f"| {_variant_label(r, variant)} | {r['hidden_sizes']} | "
                     f"{int(r['param_count']):,} | {int(r['num_seeds'])} | "
                     f"{int(r['steps_run'])} | " + " | ".join(vals) + " |")
    for bname, metrics in sorted(base.items(), key=lambda kv: kv[1].get("rmse", np.inf)):
        sd = _baseline_spread(g, bname) if folds > 1 else {}
        vals = [cell(m, metrics.get(m), f"{metrics[m]:.4g}" + (
                    f" ± {sd[m]:.2g}" if sd.get(m) is not None and np.isfinite(sd[m]) else ""))
                if m in metrics and np.isfinite(metrics[m]) else "—" for m in FORECAST_METRICS]
        if has_skill:
            vals += ["", ""]
        lines.append(f"| baseline: {bname} | | | | | " + " | ".join(vals) + " |")
    lines.append("")
    if figure:
        lines += [f"![{name}: best run vs truth and naive on the test span]({figure})", ""]
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
            opts = ", ".join(f"{c[5:]}={v}" for c, v in zip(varying, values, strict=True))
            yield f"{task} ({opts})", gv


def markdown(df: pd.DataFrame, figures: dict[str, str] | None = None) -> str:
    """The report: a table per task (cells and baselines side by side), gradient half-lives,
    a table per forecast data set (:func:`forecast_table`; ``figures`` maps its name to the
    figure file shown under it), and the failed runs."""
    lines = ["# rnnlab report", ""]
    ok = df[df["status"] == "ok"]
    failed = df[df["status"] != "ok"]
    ok = ok.drop(index=forecast_runs(df).index)  # forecast runs get their own tables
    metrics = sorted({c[: -len("_mean")] for c in df.columns if c.endswith("_mean")
                      and not c.startswith("test_")})
    for task, g in _task_variants(ok):
        lines += [f"## {task}", ""]
        header = ["cell", "T", "params", *[f"{m} (mean ± std over seeds)" for m in metrics
                                           if f"{m}_mean" in g and g[f"{m}_mean"].notna().any()],
                  "solved"]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for _, r in g.sort_values(["T", "cell"]).iterrows():
            vals = [_fmt(r[f"{m}_mean"], r.get(f"{m}_std")) for m in metrics
                    if f"{m}_mean" in g and g[f"{m}_mean"].notna().any()]
            lines.append(f"| {r['cell']} | {_length(r)} | {int(r['param_count']):,} | "
                         + " | ".join(vals) + f" | {r['solved_fraction']:.0%} |")
        shown = [m for m in metrics if f"{m}_mean" in g and g[f"{m}_mean"].notna().any()]
        base_cols = {m: f"baseline_{m}" for m in shown
                     if f"baseline_{m}" in g and g[f"baseline_{m}"].notna().any()}
        if base_cols:
            # a baseline that depends on T (the copy task's loss) is listed per T
            for T, gT in g.groupby("T") if any(g[c].nunique() > 1 for c in base_cols.values()) \
                    else [(None, g)]:
                label = "baseline" if T is None else f"baseline (T={T})"
                lines.append(f"| {label} | | | " + " | ".join(
                    f"{gT[base_cols[m]].iloc[0]:.4g}" if m in base_cols else "—" for m in shown)
                    + " | |")
        lines.append("")
        hl = [c for c in g.columns if c.startswith("grad_") and c.endswith("/h/half_life")]
        if hl:
            lines += ["Gradient half-life in steps (ln 2 / decay rate of ||dL/dh_t||; inf: no "
                      "decay):", "", "| cell | T | " + " | ".join(c[5:] for c in hl) + " |",
                      "|" + " --- |" * (len(hl) + 2)]
            for _, r in g.sort_values(["T", "cell"]).iterrows():
                lines.append(f"| {r['cell']} | {_length(r)} | "
                             + " | ".join(f"{r[c]:.3g}" for c in hl) + " |")
            lines.append("")
    for name, g in forecast_groups(df):
        lines += forecast_table(name, g, (figures or {}).get(name))
    if len(failed):
        lines += ["## Failed runs", ""]
        lines += [f"- `{r['run']}`: {r['error']}" for _, r in failed.iterrows()]
    return "\n".join(lines) + "\n"


def gradient_flow_figure(df: pd.DataFrame, task: str, path: Path, layer: str = "layer_0/h"):
    """log ||dL/dh_t|| vs t per cell, at init (left) and after training (right)."""
    runs = df[(df["task"] == task) & (df["status"] == "ok")]
    curves = []
    for _, r in runs.iterrows():
        g = read_gradients(r["run"])
        if g is None or f"{layer}/mean" not in g:
            continue
        curves.append((r, g))
    if not curves:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colors = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(sorted(runs["cell"].unique()))}
    for r, g in curves:
        mean = g[f"{layer}/mean"]
        for ax, m, when in ((axes[0], 0, "initialisation"), (axes[1], -1, "after training")):
            ax.semilogy(np.nanmean(mean[m], axis=0), color=colors[r["cell"]], lw=1.3,
                        label=f"{r['cell']} (T={_length(r)})")
            ax.set_title(f"{task}: {when} (step {int(g['steps'][m])})", fontsize=9)
    for ax in axes:
        ax.set_xlabel("t")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"||dL/d{layer.split('/')[-1]}_t|| ({layer}, seed mean)")
    handles, labels = axes[1].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
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
    for cell, g in runs.groupby("cell"):
        g = g.sort_values("T")
        ax.errorbar(g["T"], g[f"{metric}_mean"], yerr=g[f"{metric}_std"],
                    marker="o", capsize=3, label=cell)
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


def make_report(path: Path, out: Path | None = None) -> dict[str, Path]:
    path = Path(path)
    out = Path(out) if out is not None else (path if path.is_dir() else path.parent)
    out.mkdir(parents=True, exist_ok=True)
    df = results_table(find_runs(path))
    written = {"results": out / "results.csv", "report": out / "report.md"}
    df.to_csv(written["results"], index=False)
    figures = {}
    for name, g in forecast_groups(df):
        p = out / f"forecast_{_slug(name)}.png"
        if best_forecast_figure(name, g, p):
            written[f"forecast_{_slug(name)}"] = p
            figures[name] = p.name
    written["report"].write_text(markdown(df, figures))
    forecasts = forecast_runs(df)
    for task in sorted(df["task"].dropna().unique()):
        if task in set(forecasts["task"]):  # one gradient figure per data set
            for name, g in forecast_groups(df):
                p = out / f"gradient_flow_{task}_{_slug(name)}.png"
                if gradient_flow_figure(g, task, p):
                    written[f"gradient_flow_{task}_{_slug(name)}"] = p
            continue
        p = out / f"gradient_flow_{task}.png"
        if gradient_flow_figure(df, task, p):
            written[f"gradient_flow_{task}"] = p
        metric = PRIMARY_METRIC.get(task, "loss")
        p = out / f"metric_vs_length_{task}.png"
        if metric_vs_length_figure(df, task, p, metric):
            written[f"metric_vs_length_{task}"] = p
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


def publish(written: dict[str, Path], project: str = "rnnlab") -> str:
    """Publishes the report's figures and table to W&B when it is online; otherwise says why
    it skipped, without touching the network."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return f"W&B report skipped: WANDB_MODE={os.environ['WANDB_MODE']}"
    if _wandb_api_key() is None:
        return "W&B report skipped: not logged in (no WANDB_API_KEY, no `wandb login`)"
    try:
        import wandb

        run = wandb.init(project=project, job_type="report", mode="online",
                         settings=wandb.Settings(init_timeout=30, silent=True))
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
    args = parser.parse_args(argv)
    try:
        written = make_report(args.path, args.out)
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
