"""Plots of a run folder: learning curves with baselines, gradient norms through time.

Every figure is a :class:`matplotlib.figure.Figure` (no pyplot state), returned by its
``*_figure`` function so that tests can check its panels and titles, and written by
:func:`run_plots`:

* ``learning_curve.png``: held-out metrics against the training step, one line per seed, the
  task's baseline dashed; a seed that diverged is drawn up to its last finite value and the
  step where it diverged is marked (from ``events.jsonl``).
* ``gradients.png``: ``||dL/dh_t||`` (and ``||dL/dc_t||``) against ``t`` on a log axis, one
  line per measurement (seed mean), in a grid: one row per layer, one column per direction and
  carry field (forward h, forward c, reverse h, reverse c). Exact zeros, which a log axis
  cannot show (the LSTM's last cell state is never read, so ``dL/dc_{T-1} = 0``), are drawn as
  ``x`` on the bottom edge of the panel.
* ``gradients_heatmap.png``: training step against ``t``, colour ``log10`` of the norm, in the
  same grid; exact zeros in grey.
* ``forecast.png`` (forecast runs): the test span's forecasts against the truth and the naive
  forecast (:func:`rnnlab.forecast.plots.forecast_figure`).

Titles are wrapped to the figure's width so that none is cut off.
"""

import json
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

PANEL_W, PANEL_H = 3.9, 2.9  # inches per panel
DPI = 110
TITLE_SIZE = 9
ZERO_COLOR = "0.75"  # heat-map cells whose norm is exactly 0


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["step", "seed", "split"])
    return pd.read_json(path, lines=True)


def read_events(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_gradients(run_dir: str | Path) -> dict[str, np.ndarray] | None:
    path = Path(run_dir) / "gradients.npz"
    if not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def wrap_title(text: str, width_in: float, fontsize: float = TITLE_SIZE) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` points (an
    average character of DejaVu Sans is about 0.6 em wide; 0.62 leaves a margin)."""
    chars = max(int(width_in * 72 / (0.62 * fontsize)), 20)
    return "\n".join(textwrap.fill(part, chars) for part in text.split("\n"))


def _new_figure(ncols: int, nrows: int, title: str, extra_w: float = 0.0) -> Figure:
    width = PANEL_W * ncols + extra_w
    lines = wrap_title(title, width - 0.2).count("\n") + 1
    fig = Figure(figsize=(width, PANEL_H * nrows + 0.2 * lines + 0.2), dpi=DPI,
                 layout="constrained")
    fig.suptitle(wrap_title(title, width - 0.2), fontsize=TITLE_SIZE)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)


# ---- learning curve -----------------------------------------------------------------------
def learning_curve_figure(df: pd.DataFrame, baselines: dict, title: str,
                          events: list[dict] | None = None) -> Figure | None:
    """Held-out metrics vs step, one line per seed, the analytic baseline dashed; each
    ``diverged`` event is a dotted vertical line at its step. ``None`` without metrics."""
    ev = df[df["split"] == "eval"] if "split" in df else df.iloc[0:0]
    names = [c for c in ev.columns if c not in ("step", "seed", "split") and ev[c].notna().any()]
    if not names:
        return None
    diverged = [e for e in (events or []) if e.get("event") == "diverged"]
    ncols = min(len(names), 3)
    nrows = -(-len(names) // ncols)
    fig = _new_figure(ncols, nrows, title)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(names):]:
        ax.set_visible(False)
    few = ev["step"].nunique() <= 30
    for ax, name in zip(axes, names, strict=False):
        colors = {}
        for seed, g in ev.groupby("seed"):
            g = g.sort_values("step")
            (line,) = ax.plot(g["step"], g[name], marker="o" if few else None, ms=3, lw=1.2,
                              label=f"seed {seed}")
            colors[seed] = line.get_color()
        if baselines.get(name) is not None:
            ax.axhline(baselines[name], ls="--", color="k", lw=1, label="baseline")
        values = ev[name].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() / values.min() > 1e3:
            ax.set_yscale("log")  # a blow-up before divergence would flatten the rest
        for e in diverged:
            ax.axvline(e["step"], color=colors.get(e.get("seed"), "tab:red"), ls=":", lw=1.5,
                       label=f"seed {e.get('seed')} diverged (step {e['step']})")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"held-out {name}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    axes[0].legend(uniq.values(), uniq.keys(), fontsize=7)
    return fig


def learning_curve(df: pd.DataFrame, baselines: dict, title: str, path: Path,
                   events: list[dict] | None = None) -> None:
    fig = learning_curve_figure(df, baselines, title, events)
    if fig is not None:
        _save(fig, path)


# ---- gradient norms through time ----------------------------------------------------------
def curve_names(grads: dict[str, np.ndarray]) -> list[str]:
    return sorted(k[: -len("/mean")] for k in grads if k.endswith("/mean"))


_CURVE = re.compile(r"^(?P<layer>.*?)(?P<reverse>_reverse)?/(?P<field>[^/]+)$")
_FIELD_ORDER = {"h": 0, "c": 1}


def panel_grid(names: list[str]) -> tuple[list[str], list[tuple[str, str]],
                                          dict[str, tuple[int, int]]]:
    """Rows (layers), columns (``(direction, field)``) and each curve's ``(row, column)``:
    ``layer_1_reverse/c`` is row ``layer_1``, column ``("reverse", "c")``."""
    parsed = {}
    for name in names:
        m = _CURVE.match(name)
        layer, direction, field = ((m["layer"], "reverse" if m["reverse"] else "forward",
                                    m["field"]) if m else (name, "forward", ""))
        parsed[name] = (layer, (direction, field))
    rows = sorted({p[0] for p in parsed.values()},
                  key=lambda s: (int(s.rsplit("_", 1)[1]) if re.fullmatch(r".*_\d+", s)
                                 else 10**9, s))
    cols = sorted({p[1] for p in parsed.values()},
                  key=lambda c: (c[0] != "forward", _FIELD_ORDER.get(c[1], 9), c[1]))
    where = {n: (rows.index(p[0]), cols.index(p[1])) for n, p in parsed.items()}
    return rows, cols, where


def _panel_title(layer: str, column: tuple[str, str]) -> str:
    direction, field = column
    return f"{layer} {direction}: ||dL/d{field}_t||" if field else layer


def log_curve(ax, y_T: np.ndarray, color, label: str | None = None, lw: float = 1.2) -> int:
    """Draws ``y_T`` against ``t`` on ``ax`` (to be log-scaled): positive values as a line,
    exact zeros as ``x`` on the panel's bottom edge (a log axis would drop them silently).
    Returns the number of zeros drawn."""
    y_T = np.asarray(y_T, dtype=np.float64)
    t_T = np.arange(y_T.shape[0])
    ax.plot(t_T, np.where(y_T > 0, y_T, np.nan), color=color, lw=lw, label=label)
    zero_t = t_T[y_T == 0]
    if zero_t.size:
        # y in axes coordinates: on the bottom edge, whatever the log range
        ax.plot(zero_t, np.zeros(zero_t.size), ls="", marker="x", ms=5, color=color,
                transform=ax.get_xaxis_transform(), clip_on=False)
    return int(zero_t.size)


def zero_legend_entry():
    """A legend handle and label for the ``x`` marks of :func:`log_curve`."""
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="", marker="x", color="0.3"), "exactly 0 (bottom edge)"


def gradient_curves_figure(grads: dict[str, np.ndarray], title: str) -> Figure | None:
    """log ||dL/d carry_t|| vs t, per layer (rows) and direction × field (columns), one line
    per measured step (seed mean); exact zeros as ``x`` on the panel's bottom edge."""
    names = curve_names(grads)
    if not names:
        return None
    rows, cols, where = panel_grid(names)
    steps = grads["steps"]
    fig = _new_figure(len(cols), len(rows), title)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    used = set(where.values())
    for (r, c), ax in np.ndenumerate(axes):
        if (r, c) not in used:
            ax.set_visible(False)
    colors = matplotlib.colormaps["viridis"]
    label_every = max(1, -(-len(steps) // 6))  # at most about 6 legend entries
    any_zero = False
    for name in names:
        r, c = where[name]
        ax = axes[r, c]
        mean_MxSxT = grads[f"{name}/mean"]
        for m, step in enumerate(steps):
            color = colors(m / max(len(steps) - 1, 1))
            y_T = np.nanmean(mean_MxSxT[m], axis=0) if np.isfinite(mean_MxSxT[m]).any() \
                else np.full(mean_MxSxT.shape[-1], np.nan)
            labelled = m % label_every == 0 or m == len(steps) - 1
            any_zero |= log_curve(ax, y_T, color,
                                  label=f"step {step}" if labelled else None) > 0
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_ylabel(f"||dL/d{name.rsplit('/', 1)[-1]}_t||")
        ax.set_title(_panel_title(rows[r], cols[c]), fontsize=8)
        ax.grid(alpha=0.3, which="both")
    first = axes[0, 0] if (0, 0) in used else axes[where[names[0]]]
    handles, labels = first.get_legend_handles_labels()
    if any_zero:
        handle, label = zero_legend_entry()
        handles.append(handle)
        labels.append(label)
    first.legend(handles, labels, fontsize=6)
    return fig


def gradient_heatmap_figure(grads: dict[str, np.ndarray], title: str) -> Figure | None:
    """Training step x t heat map of log10 ||dL/d carry_t|| (seed mean), same grid as
    :func:`gradient_curves_figure`; exact zeros grey. ``None`` with fewer than 2
    measurements."""
    names = curve_names(grads)
    if not names or len(grads["steps"]) < 2:
        return None
    rows, cols, where = panel_grid(names)
    steps = [int(s) for s in grads["steps"]]
    fig = _new_figure(len(cols), len(rows), title, extra_w=0.6 * len(cols))
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    used = set(where.values())
    for (r, c), ax in np.ndenumerate(axes):
        if (r, c) not in used:
            ax.set_visible(False)
    cmap = matplotlib.colormaps["magma"].with_extremes(bad=ZERO_COLOR)
    every = max(1, len(steps) // 8)  # at most about 8 tick labels
    for name in names:
        r, c = where[name]
        ax = axes[r, c]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_MxT = np.nanmean(grads[f"{name}/mean"], axis=1)
            log_MxT = np.ma.masked_invalid(np.where(mean_MxT > 0, np.log10(mean_MxT), np.nan))
        im = ax.imshow(log_MxT, aspect="auto", origin="lower", cmap=cmap, interpolation="none",
                       extent=(0, log_MxT.shape[1], 0, log_MxT.shape[0]))
        ticks = np.arange(0, len(steps), every)
        ax.set_yticks(ticks + 0.5, [str(steps[i]) for i in ticks], fontsize=6)
        ax.set_xlabel("t")
        ax.set_ylabel("training step")
        ax.set_title(_panel_title(rows[r], cols[c]), fontsize=8)
        label = "log10 norm" + ("; grey: 0" if np.any(mean_MxT == 0) else "")
        fig.colorbar(im, ax=ax, label=label)
    return fig


def gradient_curves(grads: dict[str, np.ndarray], title: str, path: Path) -> None:
    fig = gradient_curves_figure(grads, title)
    if fig is not None:
        _save(fig, path)


def gradient_heatmap(grads: dict[str, np.ndarray], title: str, path: Path) -> None:
    fig = gradient_heatmap_figure(grads, title)
    if fig is not None:
        _save(fig, path)


# ---- the run folder -----------------------------------------------------------------------
def run_title(run_dir: Path, summary: dict) -> str:
    """The summary's title; for a failed run (whose summary has none beyond the folder's
    name), the task and cell from ``config.yaml`` and the error."""
    if summary.get("status", "ok") == "ok" and summary.get("title"):
        return summary["title"]
    head = summary.get("title") or run_dir.name
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        import yaml

        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        task, cell = cfg.get("task") or {}, cfg.get("cell") or {}
        fields = ", ".join(f"{k}={v}" for k, v in task.items()
                           if k != "name" and not isinstance(v, list | dict))
        head = (f"{task.get('name')}({fields}) · {cell.get('name')} "
                f"hidden_size={cell.get('hidden_size')}")
    error = summary.get("error")
    return f"{head} · FAILED: {error}" if error else head


def run_plots(run_dir: str | Path, summary: dict | None = None) -> None:
    """The run folder's figures from its logs and ``summary`` (default: its
    ``summary.json``)."""
    run_dir = Path(run_dir)
    if summary is None:
        summary = json.loads((run_dir / "summary.json").read_text())
    title = run_title(run_dir, summary)
    learning_curve(read_metrics(run_dir), summary.get("baselines", {}), title,
                   run_dir / "learning_curve.png", read_events(run_dir))
    grads = read_gradients(run_dir)
    if grads is not None:
        gradient_curves(grads, title, run_dir / "gradients.png")
        gradient_heatmap(grads, title, run_dir / "gradients_heatmap.png")
    series = (summary.get("forecast") or {}).get("series")
    if series and any(p is not None for p in series.get("per_seed", [])):
        from rnnlab.forecast.plots import forecast_figure

        forecast_figure(series, run_dir / "forecast.png", title=wrap_title(
            f"{title}: test span", 8 - 0.2), label=summary.get("cell", "model"))
