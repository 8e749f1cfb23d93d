"""Rolling-origin results: folds and seeds pooled, the network against its best baseline.

A forecast run with ``task.folds = K`` trains the network once per fold (from scratch, with the
same seeds; :meth:`rnnlab.tasks.forecast.ForecastTask.final_report`) and scores it and every
baseline on that fold's test windows. :func:`combine_folds` pools the K fold reports:

* ``model``: each metric's mean over the K x S (fold, live seed) pairs, ``model_std`` its
  population std over the same pairs; ``per_seed`` lists them (fold-major, ``None`` for a
  diverged seed).
* ``baselines``: each baseline's mean over the folds, ``baselines_std`` the std over folds
  (a baseline is deterministic, so folds are its only spread).
* ``comparison`` (:func:`compare`), for the primary metric (RMSE): the best baseline (lowest
  mean over folds), the skill score ``1 - network / best`` (ratio of the means; Murphy 1988's
  skill score with the best baseline as reference), the paired difference
  ``d = network[k, s] - best[k]`` over folds and seeds, its mean and std, and
  ``beyond_spread = |mean d| > std d``: whether the gap is larger than its own spread over
  seeds and folds (``None`` with fewer than two pairs). Skill against every baseline is in
  ``skill_vs``.
"""

from typing import Any

import numpy as np

from rnnlab.forecast.metrics import METRICS

PRIMARY = "rmse"


def _mean_std(rows: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    if not rows:
        return {}, {}
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    values = {k: np.asarray([r[k] for r in rows], dtype=np.float64) for k in keys}
    return ({k: float(np.mean(v)) for k, v in values.items()},
            {k: float(np.std(v)) for k, v in values.items()})


def compare(fold_reports: list[dict[str, Any]], metric: str = PRIMARY) -> dict[str, Any]:
    """The network against the best baseline on ``metric`` (module docstring).

    Args:
      fold_reports: one dict per fold with ``per_seed`` (list of metric dicts or ``None``) and
        ``baselines`` (name -> metric dict), as :func:`combine_folds` takes.
      metric: one of :data:`rnnlab.forecast.metrics.METRICS`.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not accepted; use one of {METRICS}")
    names = list(fold_reports[0]["baselines"])
    base_KxB = np.asarray([[r["baselines"][n][metric] for n in names] for r in fold_reports])
    base_mean_B = base_KxB.mean(axis=0)
    b = int(np.argmin(base_mean_B))
    best = names[b]
    net, diff = [], []
    for k, r in enumerate(fold_reports):
        for m in r["per_seed"]:
            if m is not None:
                net.append(m[metric])
                diff.append(m[metric] - base_KxB[k, b])
    out: dict[str, Any] = {"metric": metric, "best_baseline": best,
                           "best_baseline_mean": float(base_mean_B[b]),
                           "best_baseline_std": float(base_KxB[:, b].std()),
                           "pairs": len(net)}
    if not net:
        return out | {"network_mean": None, "skill": None, "beyond_spread": None}
    net_mean = float(np.mean(net))
    d = np.asarray(diff)
    out.update({
        "network_mean": net_mean, "network_std": float(np.std(net)),
        "skill": 1.0 - net_mean / float(base_mean_B[b]) if base_mean_B[b] > 0 else None,
        "difference_mean": float(d.mean()), "difference_std": float(d.std()),
        "beyond_spread": bool(abs(d.mean()) > d.std()) if d.size >= 2 else None,
        "skill_vs": {n: (1.0 - net_mean / float(v) if v > 0 else None)
                     for n, v in zip(names, base_mean_B, strict=True)},
    })
    return out


def combine_folds(fold_reports: list[dict[str, Any]], metric: str = PRIMARY
                  ) -> dict[str, Any]:
    """Pools fold reports (module docstring). Each report holds ``fold``, ``per_seed``,
    ``baselines`` and ``windows``; the result keeps them under ``per_fold``."""
    if not fold_reports:
        raise ValueError("combine_folds needs at least one fold report")
    per_seed = [m for r in fold_reports for m in r["per_seed"]]
    model, model_std = _mean_std([m for m in per_seed if m is not None])
    names = list(fold_reports[0]["baselines"])
    baselines, baselines_std = {}, {}
    for n in names:
        baselines[n], baselines_std[n] = _mean_std([r["baselines"][n] for r in fold_reports])
    return {"folds": len(fold_reports),
            "windows": int(sum(r["windows"] for r in fold_reports)),
            "model": model, "model_std": model_std, "per_seed": per_seed,
            "baselines": baselines, "baselines_std": baselines_std,
            "comparison": compare(fold_reports, metric),
            "per_fold": fold_reports}


def summary_lines(forecast: dict[str, Any], *, units: str = "") -> list[str]:
    """The run's closing table: the network and every baseline (mean ± std over folds and
    seeds), the best baseline named, the skill score and whether the gap beats the spread."""
    c = forecast["comparison"]
    metric = c["metric"]
    folds, seeds = forecast["folds"], len(forecast["per_fold"][0]["per_seed"])
    unit = f" ({units})" if units else ""
    n = forecast["windows"]
    lines = [f"test {metric.upper()}{unit}, {n} window{'s' if n != 1 else ''} over {folds} "
             f"fold(s) x {seeds} seed(s): mean ± std over folds and seeds"]
    if c.get("network_mean") is not None:
        lines.append(f"  {'network':<16} {c['network_mean']:.4g} ± {c['network_std']:.2g}")
    else:
        lines.append(f"  {'network':<16} every seed diverged")
    order = sorted(forecast["baselines"], key=lambda n: forecast["baselines"][n][metric])
    for n in order:
        mark = "  <- best baseline" if n == c["best_baseline"] else ""
        lines.append(f"  {n:<16} {forecast['baselines'][n][metric]:.4g} ± "
                     f"{forecast['baselines_std'][n][metric]:.2g}{mark}")
    if c.get("skill") is not None:
        verdict = {True: "larger than", False: "within", None: "(one pair: no spread for)"}[
            c["beyond_spread"]]
        lines.append(f"skill vs {c['best_baseline']}: 1 - network/baseline = "
                     f"{c['skill']:+.3f}; difference {c['difference_mean']:+.4g} ± "
                     f"{c['difference_std']:.2g} over folds and seeds, {verdict} its spread")
    return lines
