"""Forecast accuracy in the series' own units, overall and per horizon step.

Forecasts and actuals are ``[N, H]`` (N windows, H horizon steps).

* RMSE ``sqrt(mean((y - f)^2))`` and MAE ``mean(|y - f|)``.
* MASE ``MAE / s`` with ``s = mean_t |y[t] - y[t - m]|`` over the training span, the in-sample
  one-step MAE of the seasonal naive forecast (``m`` the season length; ``m = 1``, the naive
  forecast, for non-seasonal series) (Hyndman & Koehler 2006).
* sMAPE ``100 * mean(2 |y - f| / (|y| + |f|))`` in percent on the 0..200 scale (the M3/M4
  convention).

Zero denominators and non-finite values, the documented behaviour:

* sMAPE: a term with ``y = f = 0`` counts as 0 (a perfect forecast of 0; utilsforecast's
  ``losses.smape`` does the same). No other term has a zero denominator.
* MASE: when the scale ``s`` is 0 (a training span that repeats exactly every ``m`` steps,
  e.g. a constant one) the ratio is undefined: MASE is ``nan``, never ``inf``, and
  :func:`forecast_metrics` flags it with ``mase_scale = 0.0`` (the scale is always returned, so
  a reader can tell an undefined MASE from a missing one).
* Non-finite actuals or forecasts are refused (``ValueError`` naming which and how many): a
  NaN would otherwise propagate silently into every mean.

These formulas are checked against utilsforecast's ``losses`` (``rmse``, ``mae``, ``mase``,
``smape``; its sMAPE is on the 0..1 scale without the factor 2, so ours is 200 times it) in
``tests/test_forecast_metrics.py``.

:func:`forecast_metrics` returns a flat dict: ``rmse``, ``mae``, ``mase``, ``smape`` over all
windows and steps, ``mase_scale``, and ``rmse_h1``, ``mae_h1``, ... for each step
``h = 1..H``.
"""

import numpy as np

METRICS = ("rmse", "mae", "mase", "smape")


def _pair(actual, forecast):
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"actual and forecast must have one shape; got {a.shape} and {f.shape}")
    for name, v in (("actual", a), ("forecast", f)):
        bad = int(np.sum(~np.isfinite(v)))
        if bad:
            raise ValueError(f"{name} values must be finite for the forecast metrics; got "
                             f"{bad} non-finite of {v.size}")
    return a, f


def rmse(actual, forecast, axis=None):
    a, f = _pair(actual, forecast)
    return np.sqrt(np.mean((a - f) ** 2, axis=axis))


def mae(actual, forecast, axis=None):
    a, f = _pair(actual, forecast)
    return np.mean(np.abs(a - f), axis=axis)


def smape(actual, forecast, axis=None):
    a, f = _pair(actual, forecast)
    denom = np.abs(a) + np.abs(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(denom > 0, 2.0 * np.abs(a - f) / denom, 0.0)
    return 100.0 * np.mean(terms, axis=axis)


def mase_scale(train_y, season_length: int = 1) -> float:
    """In-sample one-step MAE of the seasonal naive forecast over the training span."""
    y = np.asarray(train_y, dtype=np.float64)
    m = int(season_length)
    if m < 1 or y.ndim != 1 or y.size <= m:
        raise ValueError(f"MASE needs a 1-D training series longer than season_length={m}; "
                         f"got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"MASE needs a finite training series; got "
                         f"{int(np.sum(~np.isfinite(y)))} non-finite value(s)")
    return float(np.mean(np.abs(y[m:] - y[:-m])))


def mase(actual, forecast, train_y, season_length: int = 1, axis=None):
    """``MAE / s``; ``nan`` when the scale ``s`` is 0 (module docstring)."""
    scale = mase_scale(train_y, season_length)
    err = mae(actual, forecast, axis=axis)
    return err / scale if scale > 0 else np.full_like(err, np.nan)


def forecast_metrics(actual_NxH, forecast_NxH, train_y, season_length: int = 1
                     ) -> dict[str, float]:
    """Overall and per-step RMSE, MAE, MASE and sMAPE (module docstring)."""
    a, f = _pair(actual_NxH, forecast_NxH)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"forecasts must be [N, H] with N >= 1; got shape {a.shape}")
    scale = mase_scale(train_y, season_length)
    out: dict[str, float] = {}
    per_step = {"rmse": rmse(a, f, axis=0), "mae": mae(a, f, axis=0),
                "smape": smape(a, f, axis=0)}
    per_step["mase"] = per_step["mae"] / scale if scale > 0 else np.full(a.shape[1], np.nan)
    overall = {"rmse": rmse(a, f), "mae": mae(a, f), "smape": smape(a, f)}
    overall["mase"] = overall["mae"] / scale if scale > 0 else np.nan
    for name in METRICS:
        out[name] = float(overall[name])
    out["mase_scale"] = float(scale)
    for name in METRICS:
        for h, value in enumerate(per_step[name], start=1):
            out[f"{name}_h{h}"] = float(value)
    return out
