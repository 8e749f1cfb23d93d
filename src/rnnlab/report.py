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

``--publish`` also creates a W&B report with the same panels when W&B is online (logged in,
network reachable); offline it says so and skips.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rnnlab.plots import read_gradients


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
    model = cfg.get("model", {})
    out["model.param_budget"] = model.get("param_budget")
    return out


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
        row.update(_task_fields(run))
        for metric, stats in s.get("final", {}).items():
            for stat, value in stats.items():
                row[f"{metric}_{stat}"] = value
        for metric, value in s.get("baselines", {}).items():
            row[f"baseline_{metric}"] = value
        for key, value in s.get("gradients", {}).items():
            row[f"grad_{key}"] = np.inf if value == "inf" else value
        if row.get("sequence_length") is not None:
            row["T"] = _length(row)
        for key, value in s.get("forecast", {}).get("overall", {}).items():
            row[f"test_{key}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "—"
    return f"{mean:.4g} ± {std:.2g}"


def markdown(df: pd.DataFrame) -> str:
    lines = ["# rnnlab report", ""]
    ok = df[df["status"] == "ok"]
    failed = df[df["status"] != "ok"]
    metrics = sorted({c[: -len("_mean")] for c in df.columns if c.endswith("_mean")})
    for task, g in ok.groupby("task"):
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
        base = {c[len("baseline_"):]: g[c].iloc[0] for c in g.columns
                if c.startswith("baseline_") and g[c].notna().any()}
        if base:
            lines.append("| baseline | | | " + " | ".join(
                f"{base[m]:.4g}" if m in base else "—" for m in metrics
                if f"{m}_mean" in g and g[f"{m}_mean"].notna().any()) + " | |")
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
    written["report"].write_text(markdown(df))
    for task in sorted(df["task"].dropna().unique()):
        p = out / f"gradient_flow_{task}.png"
        if gradient_flow_figure(df, task, p):
            written[f"gradient_flow_{task}"] = p
        metric = PRIMARY_METRIC.get(task, "loss")
        p = out / f"metric_vs_length_{task}.png"
        if metric_vs_length_figure(df, task, p, metric):
            written[f"metric_vs_length_{task}"] = p
    return written


def publish(written: dict[str, Path], project: str = "rnnlab") -> str:
    """Best effort W&B report; returns what happened."""
    try:
        import wandb

        if wandb.Api(timeout=10).default_entity is None:
            return "W&B report skipped: not logged in (offline)"
        run = wandb.init(project=project, job_type="report", mode="online")
        run.log({name: wandb.Image(str(p)) for name, p in written.items()
                 if p.suffix == ".png"})
        run.log({"results": wandb.Table(dataframe=pd.read_csv(written["results"]))})
        url = run.url
        run.finish()
        return f"W&B report published: {url}"
    except Exception as err:
        return f"W&B report skipped: W&B is offline or unreachable ({type(err).__name__})"


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
