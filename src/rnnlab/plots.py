"""Plots of a run folder: learning curves with baselines, gradient norms through time."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["step", "seed", "split"])
    return pd.read_json(path, lines=True)


def read_gradients(run_dir: str | Path) -> dict[str, np.ndarray] | None:
    path = Path(run_dir) / "gradients.npz"
    if not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def learning_curve(df: pd.DataFrame, baselines: dict, title: str, path: Path) -> None:
    """Held-out metrics vs step, one line per seed, the analytic baseline dashed."""
    ev = df[df["split"] == "eval"]
    names = [c for c in ev.columns if c not in ("step", "seed", "split") and ev[c].notna().any()]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for seed, g in ev.groupby("seed"):
            ax.plot(g["step"], g[name], label=f"seed {seed}", lw=1.2)
        if name in baselines and baselines[name] is not None:
            ax.axhline(baselines[name], ls="--", color="k", lw=1, label="baseline")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"held-out {name}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_names(grads: dict[str, np.ndarray]) -> list[str]:
    return sorted(k[: -len("/mean")] for k in grads if k.endswith("/mean"))


def gradient_curves(grads: dict[str, np.ndarray], title: str, path: Path) -> None:
    """log ||dL/dh_t|| vs t for each layer/field at each measured step (seed mean)."""
    names = curve_names(grads)
    if not names:
        return
    steps = grads["steps"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes[0], names, strict=True):
        mean_MxSxT = grads[f"{name}/mean"]
        for m, step in enumerate(steps):
            ax.semilogy(np.nanmean(mean_MxSxT[m], axis=0), color=cmap(m / max(len(steps) - 1, 1)),
                        label=f"step {step}", lw=1.2)
        ax.set_xlabel("t")
        ax.set_ylabel(f"||dL/d{name.split('/')[-1]}_t||")
        ax.set_title(name, fontsize=8)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gradient_heatmap(grads: dict[str, np.ndarray], title: str, path: Path) -> None:
    """Training step x t heat map of log10 ||dL/dh_t|| (seed mean), one panel per curve."""
    names = [n for n in curve_names(grads) if n.endswith("/h")]
    if not names or len(grads["steps"]) < 2:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        log_MxT = np.log10(np.maximum(np.nanmean(grads[f"{name}/mean"], axis=1), 1e-30))
        im = ax.imshow(log_MxT, aspect="auto", origin="lower", cmap="magma",
                       extent=(0, log_MxT.shape[1], 0, log_MxT.shape[0]))
        ticks = np.arange(len(grads["steps"]))
        ax.set_yticks(ticks + 0.5, [str(s) for s in grads["steps"]], fontsize=6)
        ax.set_xlabel("t")
        ax.set_ylabel("training step")
        ax.set_title(name, fontsize=8)
        fig.colorbar(im, ax=ax, label="log10 norm")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_plots(run_dir: str | Path) -> None:
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    title = summary.get("title", run_dir.name)
    learning_curve(read_metrics(run_dir), summary.get("baselines", {}), title,
                   run_dir / "learning_curve.png")
    grads = read_gradients(run_dir)
    if grads is not None:
        gradient_curves(grads, title, run_dir / "gradients.png")
        gradient_heatmap(grads, title, run_dir / "gradients_heatmap.png")
