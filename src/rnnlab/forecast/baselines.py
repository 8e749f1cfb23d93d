"""Classical baselines, forecasting the same windows as the models, in the series' own units.

Every baseline maps the target series ``y_T`` (original units) and the window origins
``origins_N`` (the first target step of each window) to direct multi-step forecasts
``[N, H]``. A forecast from origin ``t0`` reads only ``y[:t0]``, the history known then
(the naive family may read further back than the model's lookback, as they are defined to);
fitted baselines (mean, AR) are fitted on the training span ``y[:train_end]`` alone.
Step ``h = 1..H`` of the horizon forecasts ``y[t0 + h - 1]``:

* ``naive``: ``y[t0 - 1]``, the last value.
* ``seasonal_naive``: ``y[t0 - 1 + h - m * (floor((h - 1) / m) + 1)]``, the value one season
  before (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 5.2).
* ``drift``: ``y[t0 - 1] + h * (y[t0 - 1] - y[0]) / (t0 - 1)``, the line through the first
  and last observation.
* ``mean``: the training-span mean.
* ``ar``: a linear AR(p), ``y[t0 + h - 1] ~ c_h + sum_i a_{h,i} y[t0 - i]`` for ``i = 1..p``,
  one least-squares fit per horizon step (direct multi-step) over the training windows.
"""

import numpy as np


def _check(y_T, origins_N, horizon: int, history: int = 1):
    y = np.asarray(y_T, dtype=np.float64)
    origins = np.asarray(origins_N, dtype=np.int64)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D series [T]; got shape {y.shape}")
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1; got {horizon!r}")
    if origins.size and (origins.min() < history or origins.max() + horizon > y.size):
        raise ValueError(f"origins must lie in [{history}, {y.size - horizon}] (history "
                         f"{history}, T={y.size}, horizon={horizon}); got "
                         f"[{origins.min()}, {origins.max()}]")
    return y, origins, np.arange(1, horizon + 1)


def naive(y_T, origins_N, horizon: int) -> np.ndarray:
    y, origins, steps_H = _check(y_T, origins_N, horizon)
    return np.repeat(y[origins - 1][:, None], steps_H.size, axis=1)


def seasonal_naive(y_T, origins_N, horizon: int, season_length: int) -> np.ndarray:
    if season_length < 1:
        raise ValueError(f"season_length must be >= 1; got {season_length}")
    y, origins, steps_H = _check(y_T, origins_N, horizon, history=season_length)
    back_H = season_length * ((steps_H - 1) // season_length + 1)
    return y[origins[:, None] - 1 + steps_H[None, :] - back_H[None, :]]


def drift(y_T, origins_N, horizon: int) -> np.ndarray:
    y, origins, steps_H = _check(y_T, origins_N, horizon, history=2)
    last_N = y[origins - 1]
    slope_N = (last_N - y[0]) / (origins - 1)
    return last_N[:, None] + steps_H[None, :] * slope_N[:, None]


def mean(y_T, origins_N, horizon: int, train_end: int) -> np.ndarray:
    y, origins, _ = _check(y_T, origins_N, horizon)
    return np.full((origins.size, horizon), np.mean(y[:train_end]))


def fit_ar(y_T, order: int, horizon: int, train_end: int) -> np.ndarray:
    """Coefficients ``[H, 1 + p]`` (intercept, then lags ``1..p``) by least squares over every
    window with inputs and targets inside ``y[:train_end]``."""
    y = np.asarray(y_T, dtype=np.float64)
    if order < 1:
        raise ValueError(f"AR order must be >= 1; got {order}")
    origins = np.arange(order, train_end - horizon + 1)
    if origins.size < order + 1:
        raise ValueError(f"AR({order}) needs at least {order + 1} training windows for "
                         f"{order + 1} coefficients; the training span of {train_end} rows "
                         f"with horizon {horizon} has {origins.size}")
    design_NxP = _ar_design(y, origins, order)
    targets_NxH = y[origins[:, None] + np.arange(horizon)[None, :]]
    coef_PxH, *_ = np.linalg.lstsq(design_NxP, targets_NxH, rcond=None)
    return coef_PxH.T


def _ar_design(y, origins, order):
    lags_NxP = y[origins[:, None] - np.arange(1, order + 1)[None, :]]
    return np.concatenate([np.ones((origins.size, 1)), lags_NxP], axis=1)


def ar(y_T, origins_N, horizon: int, train_end: int, order: int) -> np.ndarray:
    y, origins, _ = _check(y_T, origins_N, horizon, history=order)
    coef_HxP = fit_ar(y, order, horizon, train_end)
    return _ar_design(y, origins, order) @ coef_HxP.T


def all_baselines(y_T, origins_N, horizon: int, *, train_end: int, season_length: int,
                  ar_order: int) -> dict[str, np.ndarray]:
    """Every baseline's ``[N, H]`` forecasts, keyed by name (``ar`` is ``ar(p)``)."""
    return {
        "naive": naive(y_T, origins_N, horizon),
        "seasonal_naive": seasonal_naive(y_T, origins_N, horizon, season_length),
        "drift": drift(y_T, origins_N, horizon),
        "mean": mean(y_T, origins_N, horizon, train_end),
        f"ar({ar_order})": ar(y_T, origins_N, horizon, train_end, ar_order),
    }
