"""Sliding windows over a series, and invertible transforms (log, differencing).

Shape legend: T time steps, F features, N windows, L lookback, H horizon, K targets.

A window is named by its *origin* ``t0``, the index of its first target step: its inputs are
rows ``t0 - L .. t0 - 1`` and its targets rows ``t0 .. t0 + H - 1`` (the ``H`` values right
after its inputs, a direct multi-step target).
"""

from collections.abc import Sequence

import numpy as np

TRANSFORMS = ("none", "log", "diff", "log_diff")


def split_sequence(sequence, n_steps: int):
    """The ``split_sequence`` of the Keras LSTM notes, unchanged in behaviour.

    ``X[i] = sequence[i : i + n_steps]`` and ``y[i] = sequence[i + n_steps]``, for every
    ``i`` with ``i + n_steps <= len(sequence) - 1``. A 1-D sequence gives ``X`` of shape
    ``[samples, n_steps]`` (reshape to ``[samples, n_steps, 1]`` for a recurrent layer); a 2-D
    ``[T, F]`` one gives ``[samples, n_steps, F]`` and ``y`` of shape ``[samples, F]``.

    >>> X, y = split_sequence([10, 20, 30, 40, 50], 3)
    >>> X.tolist(), y.tolist()
    ([[10, 20, 30], [20, 30, 40]], [40, 50])
    """
    if not isinstance(n_steps, int | np.integer) or n_steps < 1:
        raise ValueError(f"n_steps must be an int >= 1; got {n_steps!r}")
    X, y = [], []
    for i in range(len(sequence)):
        end_ix = i + n_steps
        if end_ix > len(sequence) - 1:
            break
        seq_x, seq_y = sequence[i:end_ix], sequence[end_ix]
        X.append(seq_x)
        y.append(seq_y)
    return np.array(X), np.array(y)


def window_origins(start: int, stop: int, lookback: int, horizon: int) -> np.ndarray:
    """Origins of all windows whose inputs start at or after row ``start`` and whose targets
    end before row ``stop``: ``t0`` in ``[start + L, stop - H]``, as int64 ``[N]``."""
    first, last = start + lookback, stop - horizon
    return np.arange(first, max(last + 1, first), dtype=np.int64)


def gather_windows(values_TxF, origins_N, lookback: int, horizon: int,
                   target_index: int | Sequence[int] = 0):
    """Inputs ``x_NxLxF`` (all columns) and targets ``y_NxH`` (``y_NxHxK`` for a sequence of
    target indices) of the windows with these origins."""
    values_TxF = np.asarray(values_TxF)
    if values_TxF.ndim != 2:
        raise ValueError(f"values must be [T, F]; got shape {values_TxF.shape}")
    origins_N = np.asarray(origins_N, dtype=np.int64)
    T = values_TxF.shape[0]
    if origins_N.size and (origins_N.min() < lookback or origins_N.max() + horizon > T):
        raise ValueError(f"window origins must lie in [lookback, T - horizon] = "
                         f"[{lookback}, {T - horizon}]; got [{origins_N.min()}, "
                         f"{origins_N.max()}]")
    x_idx_NxL = origins_N[:, None] + np.arange(-lookback, 0)[None, :]
    y_idx_NxH = origins_N[:, None] + np.arange(horizon)[None, :]
    x_NxLxF = values_TxF[x_idx_NxL]
    y_NxHxF = values_TxF[y_idx_NxH]
    y = y_NxHxF[:, :, target_index] if isinstance(target_index, int | np.integer) else \
        y_NxHxF[:, :, list(target_index)]
    return x_NxLxF, y


def make_windows(values_TxF, target_index: int | Sequence[int], lookback: int, horizon: int):
    """Every window of a ``[T, F]`` array (a 1-D array is one feature).

    Window ``k`` has inputs ``values[k : k + L]`` and targets
    ``values[k + L : k + L + H, target_index]``; there are ``T - L - H + 1`` windows. With
    ``H = 1`` and one feature this is :func:`split_sequence` with a trailing feature axis.

    Returns:
      ``x_NxLxF`` and ``y_NxH`` (``y_NxHxK`` when ``target_index`` is a sequence).
    """
    values = np.asarray(values_TxF)
    if values.ndim == 1:
        values = values[:, None]
    for name, value in (("lookback", lookback), ("horizon", horizon)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    T = values.shape[0]
    if T < lookback + horizon:
        raise ValueError(f"a series of {T} steps has no window of lookback + horizon = "
                         f"{lookback} + {horizon} = {lookback + horizon} steps")
    return gather_windows(values, window_origins(0, T, lookback, horizon), lookback, horizon,
                          target_index)


# ---- transforms -------------------------------------------------------------------------------
def transform_offset(name: str) -> int:
    """Leading rows a transform leaves undefined (1 for differencing)."""
    check_transform(name)
    return 1 if name in ("diff", "log_diff") else 0


def check_transform(name: str) -> None:
    if name not in TRANSFORMS:
        raise ValueError(f"transform={name!r} is not accepted; use one of {TRANSFORMS}")


def apply_transform(values_TxF, name: str, columns: Sequence[str] | None = None) -> np.ndarray:
    """The transformed series, same length; rows before :func:`transform_offset` are NaN.

    ``log``: ``log(v)``; ``diff``: ``v[t] - v[t-1]``; ``log_diff``: ``log(v[t]) - log(v[t-1])``
    (log returns). Log transforms need positive values: a column with a value <= 0 (or NaN)
    raises ``ValueError`` naming the column, the count and its minimum (never ``-inf``/``nan``).
    """
    check_transform(name)
    v = np.asarray(values_TxF, dtype=np.float64)
    if name in ("log", "log_diff"):
        bad = np.sum(~(v > 0), axis=0)
        for j in np.flatnonzero(bad):
            column = repr(columns[j]) if columns is not None else f"{j}"
            raise ValueError(f"transform={name!r} needs positive values; column {column} has "
                             f"{int(bad[j])} value(s) <= 0 or NaN (minimum "
                             f"{np.nanmin(v[:, j]):g}); use transform=none or diff")
        v = np.log(v)
    if name in ("diff", "log_diff"):
        out = np.full_like(v, np.nan)
        out[1:] = v[1:] - v[:-1]
        return out
    return v


def invert_transform(z_NxH, name: str, anchor_N) -> np.ndarray:
    """Levels from transformed forecasts ``z_NxH`` of one column.

    ``anchor_N`` is the level at the last input step ``t0 - 1`` of each window (known when
    the forecast is made); differenced forecasts are summed from it.
    """
    check_transform(name)
    z = np.asarray(z_NxH, dtype=np.float64)
    anchor_Nx1 = np.asarray(anchor_N, dtype=np.float64).reshape(-1, 1)
    if name == "none":
        return z
    if name == "log":
        return np.exp(z)
    if name == "diff":
        return anchor_Nx1 + np.cumsum(z, axis=1)
    return anchor_Nx1 * np.exp(np.cumsum(z, axis=1))


def forward_transform(levels_NxH, name: str, anchor_N) -> np.ndarray:
    """The inverse of :func:`invert_transform`: forecasts in levels to the transformed space."""
    check_transform(name)
    lv = np.asarray(levels_NxH, dtype=np.float64)
    anchor_Nx1 = np.asarray(anchor_N, dtype=np.float64).reshape(-1, 1)
    if name in ("log", "log_diff"):
        with np.errstate(divide="ignore", invalid="ignore"):
            lv, anchor_Nx1 = np.log(lv), np.log(anchor_Nx1)
    if name in ("diff", "log_diff"):
        return np.diff(np.concatenate([anchor_Nx1, lv], axis=1), axis=1)
    return lv
