"""Statistical baselines forecasting the same windows as the models, in the series' own units.

Every baseline maps the target series ``y_T`` (original units), the window origins
``origins_N`` (the first target step of each window) and the end of the training span
``train_end`` to direct multi-step forecasts ``[N, H]``; step ``h = 1..H`` forecasts
``y[t0 + h - 1]``. One rule for all of them: **parameters are fitted on the training span
``y[:train_end]`` alone; the state is the history known at each window's origin**, ``y[:t0]``,
exactly the rows a model's input window is drawn from. A value after ``train_end`` can change a
baseline's forecast of a later window (as it changes the model's input), never its parameters.

The models are statsforecast's (Garza, Mergenthaler Canseco, Challú & Olivares, *StatsForecast:
lightning fast forecasting with statistical and econometric models*, PyCon 2022), the methods
that won or anchor the M3/M4 competitions (Makridakis, Spiliotis & Assimakopoulos 2020):

* ``naive``: ``Naive``, the last value ``y[t0 - 1]`` (no parameter).
* ``seasonal_naive``: ``SeasonalNaive(m)``, the value one season before,
  ``y[t0 - 1 + h - m * (floor((h - 1) / m) + 1)]`` (Hyndman & Athanasopoulos, *Forecasting:
  Principles and Practice*, 3rd ed., 5.2) (no parameter).
* ``drift``: ``RandomWalkWithDrift``; its slope ``(y[train_end - 1] - y[0]) / (train_end - 1)``
  is fitted on the training span, its level is ``y[t0 - 1]``: ``y[t0 - 1] + h * slope``.
* ``mean``: ``HistoricAverage``, the training-span mean.
* ``auto_ets``: ``AutoETS(season_length=m)``, the exponential-smoothing state-space model
  chosen by AICc (Hyndman, Koehler, Snyder & Grose 2002); at each origin ``forward`` runs the
  fitted model (its parameters unchanged) over ``y[:t0]``.
* ``auto_arima``: ``AutoARIMA(season_length=m)``, the Hyndman & Khandakar (2008) stepwise
  search; ``forward`` as for ETS.
* ``auto_theta``: ``AutoTheta(season_length=m)``, the best of the standard, optimised and
  dynamic Theta models (Assimakopoulos & Nikolopoulos 2000; Fiorucci et al. 2016), with
  classical multiplicative deseasonalisation when a seasonality test finds it; ``forward`` as
  for ETS.
* ``ar(p)``: a linear AR(p), ``y[t0 + h - 1] ~ c_h + sum_i a_{h,i} y[t0 - i]`` for
  ``i = 1..p``, one least-squares fit per horizon step (direct multi-step) over the training
  windows. Kept by hand: statsforecast's ``AutoRegressive(lags=p)`` is an ARIMA(p, 0, 0) fitted
  by maximum likelihood (``CSS-ML``), which fails on a trending series (co2 levels: no finite
  residual), and its ``CSS`` fit does not converge for p = 24; least squares is closed form.

statsforecast is the ``forecast`` extra (``pip install "rnnlab[forecast]"``); it is imported
when a baseline is first needed. Fitted models are cached per (model, season length, training
values), so the jobs of a sweep that share a series and a fold fit each model once.
"""

import functools
import warnings

import numpy as np

SEASONAL_MODELS = ("seasonal_naive", "auto_ets", "auto_arima", "auto_theta")
STATSFORECAST_MODELS = ("naive", "seasonal_naive", "drift", "mean", "auto_ets", "auto_arima",
                        "auto_theta")
INSTALL_HINT = ('statsforecast is needed for the forecasting baselines: pip install '
                '"rnnlab[forecast]" (or pip install statsforecast utilsforecast)')


def require_statsforecast():
    """``statsforecast.models``; ``ImportError`` naming the extra to install when missing."""
    try:
        from statsforecast import models
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return models


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
    if not np.all(np.isfinite(y)):
        raise ValueError(f"the series must be finite for the baselines; it has "
                         f"{int(np.sum(~np.isfinite(y)))} non-finite value(s)")
    return y, origins


def _check_train_end(y, origins, train_end: int, need: int = 2):
    if not isinstance(train_end, int | np.integer) or not need <= train_end <= y.size:
        raise ValueError(f"train_end must be an int in [{need}, {y.size}]; got {train_end!r}")
    if origins.size and origins.min() < train_end:
        raise ValueError(f"every forecast origin must lie at or after train_end={train_end} "
                         f"(baselines are fitted on y[:train_end]); got origin {origins.min()}")


# ---- fitted statsforecast models, cached per training span ----------------------------------
def _make(name: str, season_length: int):
    m = require_statsforecast()
    return {"naive": lambda: m.Naive(),
            "seasonal_naive": lambda: m.SeasonalNaive(season_length=season_length),
            "drift": lambda: m.RandomWalkWithDrift(),
            "mean": lambda: m.HistoricAverage(),
            "auto_ets": lambda: m.AutoETS(season_length=season_length),
            "auto_arima": lambda: m.AutoARIMA(season_length=season_length),
            "auto_theta": lambda: m.AutoTheta(season_length=season_length)}[name]()


@functools.lru_cache(maxsize=256)
def _fitted(name: str, season_length: int, train_bytes: bytes):
    """``(model, warnings)``: the model fitted on the training values (cached)."""
    y_train = np.frombuffer(train_bytes, dtype=np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _make(name, season_length).fit(y_train)
    return model, tuple(sorted({f"{name}: {w.message}" for w in caught}))


def fit_model(name: str, y_train, season_length: int = 1):
    """The statsforecast model ``name`` (:data:`STATSFORECAST_MODELS`) fitted on ``y_train``.

    Returns ``(model, warnings)``: the fitted model (shared through a cache: do not refit it)
    and the messages of the warnings its fit raised (a convergence note, say), recorded
    rather than printed."""
    if name not in STATSFORECAST_MODELS:
        raise ValueError(f"baseline {name!r} is not a statsforecast model; use one of "
                         f"{STATSFORECAST_MODELS}")
    if not isinstance(season_length, int | np.integer) or season_length < 1:
        raise ValueError(f"season_length must be an int >= 1; got {season_length!r}")
    y = np.ascontiguousarray(y_train, dtype=np.float64)
    return _fitted(name, int(season_length) if name in SEASONAL_MODELS else 1, y.tobytes())


def statsforecast_baseline(name: str, y_T, origins_N, horizon: int, *, train_end: int,
                           season_length: int = 1) -> tuple[np.ndarray, tuple[str, ...]]:
    """Forecasts ``[N, H]`` of one statsforecast model (module docstring) and its fit's
    warnings."""
    history = season_length if name == "seasonal_naive" else 1
    y, origins = _check(y_T, origins_N, horizon, history)
    _check_train_end(y, origins, train_end)
    model, notes = fit_model(name, y[:train_end], season_length)
    if name == "mean":
        level = model.predict(h=horizon)["mean"]
        return np.tile(level, (origins.size, 1)), notes
    if name == "drift":
        slope = float(model.model_["slope"][0])
        steps_H = np.arange(1, horizon + 1)
        return y[origins - 1][:, None] + slope * steps_H[None, :], notes
    out_NxH = np.empty((origins.size, horizon))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, t0 in enumerate(origins):
            if name in ("naive", "seasonal_naive"):  # no parameter: the history is the model
                out_NxH[i] = model.forecast(y=y[:t0], h=horizon)["mean"]
            else:  # fitted parameters, state run over the history known at the origin
                out_NxH[i] = model.forward(y=y[:t0], h=horizon)["mean"]
    notes += tuple(sorted({f"{name} forward: {w.message}" for w in caught}))
    if not np.all(np.isfinite(out_NxH)):
        raise FloatingPointError(f"baseline {name} gave {int(np.sum(~np.isfinite(out_NxH)))} "
                                 f"non-finite forecast(s) on {origins.size} windows")
    return out_NxH, notes


# ---- AR(p) by least squares -----------------------------------------------------------------
def fit_ar(y_T, order: int, horizon: int, train_end: int) -> np.ndarray:
    """Coefficients ``[H, 1 + p]`` (intercept, then lags ``1..p``) by least squares over every
    window with inputs and targets inside ``y[:train_end]``."""
    y = np.asarray(y_T, dtype=np.float64)
    if not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"AR order must be an int >= 1; got {order!r}")
    origins = np.arange(order, train_end - horizon + 1)
    if origins.size < order + 1:
        raise ValueError(f"AR({order}) needs at least {order + 1} training windows for "
                         f"{order + 1} coefficients; the training span of {train_end} rows "
                         f"with horizon {horizon} has {origins.size} (lower task.ar_order)")
    design_NxP = _ar_design(y, origins, order)
    targets_NxH = y[origins[:, None] + np.arange(horizon)[None, :]]
    coef_PxH, *_ = np.linalg.lstsq(design_NxP, targets_NxH, rcond=None)
    return coef_PxH.T


def _ar_design(y, origins, order):
    lags_NxP = y[origins[:, None] - np.arange(1, order + 1)[None, :]]
    return np.concatenate([np.ones((origins.size, 1)), lags_NxP], axis=1)


def ar(y_T, origins_N, horizon: int, train_end: int, order: int) -> np.ndarray:
    y, origins = _check(y_T, origins_N, horizon, history=order)
    _check_train_end(y, origins, train_end)
    coef_HxP = fit_ar(y, order, horizon, train_end)
    return _ar_design(y, origins, order) @ coef_HxP.T


def naive(y_T, origins_N, horizon: int) -> np.ndarray:
    """The last value, ``y[t0 - 1]`` for every step (no fit; used for the scaled validation
    baseline logged during training)."""
    y, origins = _check(y_T, origins_N, horizon)
    return np.repeat(y[origins - 1][:, None], horizon, axis=1)


def all_baselines(y_T, origins_N, horizon: int, *, train_end: int, season_length: int,
                  ar_order: int, notes: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every baseline's ``[N, H]`` forecasts, keyed by name (``ar`` is ``ar(p)``); the fits'
    warning messages are appended to ``notes`` when given."""
    out = {}
    for name in STATSFORECAST_MODELS:
        out[name], msgs = statsforecast_baseline(name, y_T, origins_N, horizon,
                                                 train_end=train_end,
                                                 season_length=season_length)
        if notes is not None:
            notes.extend(msgs)
    out[f"ar({ar_order})"] = ar(y_T, origins_N, horizon, train_end, ar_order)
    return out
