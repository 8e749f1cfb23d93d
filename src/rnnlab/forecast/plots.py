"""Forecast-vs-truth plots of a forecast run's test span.

Shape legend: S seeds, N test windows, H horizon steps.

The data path: the forecast task's ``final_report`` stores the test span's forecasts in the
run's ``summary.json`` under ``summary["forecast"]["series"]`` (:func:`series_record`: the
target times, the actual values, each seed's forecasts and every baseline's, all in the
series' own units), so a plot needs the run folder alone, not the model's weights. The report
command (``python -m rnnlab.report PATH``) draws :func:`forecast_figure` for the best run of
each data set (into ``--out``; for a single run folder, into that folder).

The figure shows horizon step ``h`` (default 1) of every test window: the truth, the model's
seed mean with the band between its best and worst seed, and the naive (last value) forecast.
"""

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SERIES_KEY = "series"  # summary["forecast"][SERIES_KEY]


def _times(labels) -> list:
    """Index labels as JSON-friendly values: ISO dates for timestamps, ints for steps."""
    values = np.asarray(labels)
    if np.issubdtype(values.dtype, np.datetime64):
        return [str(t.date()) if t == t.normalize() else str(t)
                for t in pd.DatetimeIndex(values)]
    return [v.item() if hasattr(v, "item") else v for v in values]


def _rows(x_NxH) -> list[list[float | None]]:
    return [[float(v) if math.isfinite(v) else None for v in row]
            for row in np.asarray(x_NxH, dtype=np.float64)]


def series_record(data, pred_levels_SxNxH, alive_S, split: str = "test") -> dict[str, Any]:
    """What a forecast-vs-truth plot of ``split`` needs, as plain lists for ``summary.json``.

    Args:
      data: the task's :class:`rnnlab.forecast.ForecastData`.
      pred_levels_SxNxH: each seed's forecasts in the series' units.
      alive_S: which seeds finished with finite losses (the others are stored as ``None``).

    Returns:
      ``{"target", "time" [N] (first target step of each window), "actual" [N][H],
      "per_seed" [S] of [N][H] or None, "baselines" {name: [N][H]}, "context_time" [K],
      "context" [K]}``, the context being the K = min(max(N, 10), rows before) values of
      the target just before the first test target, for the plot's lead-in.
    """
    pred = np.asarray(pred_levels_SxNxH, dtype=np.float64)
    expected = (data.num_windows(split), data.horizon)
    if pred.ndim != 3 or pred.shape[1:] != expected:
        raise ValueError(f"forecasts must be [S, N, H] with [N, H] = {expected}; "
                         f"got {pred.shape}")
    alive = np.asarray(alive_S, dtype=bool)
    if alive.shape != pred.shape[:1]:
        raise ValueError(f"alive must be [S] = [{pred.shape[0]}]; got {alive.shape}")
    first = int(data.origins[split][0])
    k = min(first, max(expected[0], 10))
    return {
        "target": data.target,
        "context_time": _times(np.asarray(data.index)[first - k:first]),
        "context": [float(v) for v in data.target_levels[first - k:first]],
        "time": _times(data.target_times(split)[:, 0]),
        "actual": _rows(data.actuals(split)),
        "per_seed": [_rows(p) if ok else None for p, ok in zip(pred, alive, strict=True)],
        "baselines": {name: _rows(f) for name, f in data.baseline_forecasts(split).items()},
    }


def _as_array(rows) -> np.ndarray:
    return np.asarray([[np.nan if v is None else v for v in row] for row in rows],
                      dtype=np.float64)


def _axis_times(times: list):
    try:
        return pd.to_datetime(times) if times and isinstance(times[0], str) else times
    except (ValueError, TypeError):
        return times


def forecast_figure(series: dict[str, Any], path: str | Path, *, title: str,
                    label: str = "model", step: int = 1) -> Path:
    """Truth, the model (seed mean, best-to-worst seed band) and naive on the test span.

    Args:
      series: ``summary["forecast"]["series"]`` (:func:`series_record`).
      path: the PNG to write.
      title: the figure title (data set, run).
      label: the model's legend entry (e.g. the cell).
      step: the horizon step ``h`` drawn (1 = one step ahead).
    """
    actual_NxH = _as_array(series["actual"])
    if not 1 <= step <= actual_NxH.shape[1]:
        raise ValueError(f"step must be in [1, {actual_NxH.shape[1]}]; got {step}")
    live = [_as_array(p) for p in series["per_seed"] if p is not None]
    if not live:
        raise ValueError("no live seed to plot: every seed diverged")
    h = step - 1
    pred_SxN = np.stack([p[:, h] for p in live])
    times = _axis_times(series["time"])
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    marker = "o" if len(times) <= 40 else None  # a short span is a few points, not lines
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    if series.get("context"):
        ax.plot(_axis_times(series["context_time"]), series["context"], color="0.3", lw=1.0,
                ls=":", marker=marker, ms=3, label="before the test span")
    ax.plot(times, actual_NxH[:, h], color="k", lw=1.4, marker=marker, ms=4, label="truth")
    if "naive" in series["baselines"]:
        ax.plot(times, _as_array(series["baselines"]["naive"])[:, h], color="0.55", ls="--",
                lw=1.0, marker=marker, ms=4, label="naive (last value)")
    ax.plot(times, pred_SxN.mean(axis=0), color="tab:red", lw=1.3, marker=marker, ms=4,
            label=f"{label} (mean of {len(live)} seed{'s' if len(live) > 1 else ''})")
    if len(live) > 1:
        if marker:
            ax.vlines(times, pred_SxN.min(axis=0), pred_SxN.max(axis=0), color="tab:red",
                      alpha=0.4, lw=3, label="seed range")
        else:
            ax.fill_between(times, pred_SxN.min(axis=0), pred_SxN.max(axis=0),
                            color="tab:red", alpha=0.2, lw=0, label="seed range")
    ax.set_ylabel(series.get("target", "value"))
    ax.set_xlabel("test span" + (f" (step h={step} of each window)" if
                                 actual_NxH.shape[1] > 1 else ""))
    # wrapped to the figure's width (about 0.6 em per character of DejaVu Sans at 9 pt)
    ax.set_title("\n".join(textwrap.fill(line, 100) for line in title.split("\n")),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    return path
