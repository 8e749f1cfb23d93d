"""Forecasting: windows, splits and scaling (no leakage), baselines, metrics, data sets, task.

Hand-computed values are worked out in the comments beside them.
"""

import dataclasses

import jax
import numpy as np
import pandas as pd
import pytest

from rnnlab import forecast
from rnnlab.config import compose
from rnnlab.forecast import baselines, metrics
from rnnlab.forecast.scaling import fit_scaler, split_spans
from rnnlab.forecast.windows import (
    TRANSFORMS,
    apply_transform,
    forward_transform,
    gather_windows,
    invert_transform,
    make_windows,
    split_sequence,
    transform_offset,
)
from rnnlab.tasks import make_task
from rnnlab.train import make_train, seed_keys


# ---- split_sequence: the notes' printed examples ----------------------------------------------
def test_split_sequence_reproduces_univariate_example():
    X, y = split_sequence([10, 20, 30, 40, 50, 60, 70, 80, 90], 3)
    np.testing.assert_array_equal(X, np.array([[10, 20, 30], [20, 30, 40], [30, 40, 50],
                                               [40, 50, 60], [50, 60, 70], [60, 70, 80]]))
    np.testing.assert_array_equal(y, np.array([40, 50, 60, 70, 80, 90]))
    assert X.dtype.kind == "i" and y.dtype.kind == "i"
    assert X.reshape((X.shape[0], X.shape[1], 1)).shape == (6, 3, 1)  # [samples, steps, features]


def test_split_sequence_reproduces_multivariate_example():
    X, y = split_sequence(np.arange(20).reshape(-1, 2), 4)
    printed = np.array([[[0, 1], [2, 3], [4, 5], [6, 7]],
                        [[2, 3], [4, 5], [6, 7], [8, 9]],
                        [[4, 5], [6, 7], [8, 9], [10, 11]],
                        [[6, 7], [8, 9], [10, 11], [12, 13]],
                        [[8, 9], [10, 11], [12, 13], [14, 15]],
                        [[10, 11], [12, 13], [14, 15], [16, 17]]])
    np.testing.assert_array_equal(X, printed)
    assert X.shape == (6, 4, 2) and y.shape == (6, 2)
    np.testing.assert_array_equal(y, np.arange(8, 20).reshape(6, 2))


def test_split_sequence_rejects_bad_steps():
    with pytest.raises(ValueError, match="n_steps must be an int >= 1; got 0"):
        split_sequence([1, 2, 3], 0)


# ---- windows ----------------------------------------------------------------------------------
def test_make_windows_alignment_and_horizon():
    rng = np.random.default_rng(1)
    values_TxF = rng.standard_normal((30, 3))
    L, H = 5, 4
    x, y = make_windows(values_TxF, 2, L, H)
    assert x.shape == (30 - L - H + 1, L, 3) and y.shape == (30 - L - H + 1, H)
    for k in range(x.shape[0]):  # a plain loop as the reference
        np.testing.assert_array_equal(x[k], values_TxF[k:k + L])
        np.testing.assert_array_equal(y[k], values_TxF[k + L:k + L + H, 2])
    # the target of window k starts right after its last input
    np.testing.assert_array_equal(y[:, 0], values_TxF[L:L + x.shape[0], 2])
    _, y_multi = make_windows(values_TxF, [0, 2], L, H)
    assert y_multi.shape == (x.shape[0], H, 2)
    np.testing.assert_array_equal(y_multi[..., 1], y)


def test_make_windows_with_horizon_one_is_split_sequence():
    seq = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90], dtype=float)
    X_ref, y_ref = split_sequence(seq, 3)
    x, y = make_windows(seq, 0, 3, 1)
    np.testing.assert_array_equal(x[..., 0], X_ref)
    np.testing.assert_array_equal(y[:, 0], y_ref)


def test_make_windows_too_short():
    with pytest.raises(ValueError, match=r"4 steps has no window of lookback \+ horizon = 3 \+ "
                                         r"2 = 5 steps"):
        make_windows(np.arange(4.0), 0, 3, 2)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_transforms_invert_exactly(name):
    levels_T = 50.0 + np.cumsum(np.random.default_rng(2).uniform(-1, 1, 40))
    L, H = 4, 3
    z_Tx1 = apply_transform(levels_T[:, None], name)
    offset = transform_offset(name)
    assert np.isnan(z_Tx1[:offset]).all() and np.isfinite(z_Tx1[offset:]).all()
    origins = np.arange(offset + L, 40 - H + 1)
    _, z_targets = gather_windows(z_Tx1, origins, L, H, 0)
    _, level_targets = gather_windows(levels_T[:, None], origins, L, H, 0)
    anchors = levels_T[origins - 1]
    np.testing.assert_allclose(invert_transform(z_targets, name, anchors), level_targets,
                               rtol=1e-12)
    np.testing.assert_allclose(forward_transform(level_targets, name, anchors), z_targets,
                               rtol=1e-9, atol=1e-12)


def test_log_transform_names_column():
    with pytest.raises(ValueError, match=r"column 'b' has 2 value\(s\) <= 0 or NaN "
                                         r"\(minimum -1\)"):
        apply_transform(np.array([[1.0, 0.0], [2.0, -1.0]]), "log", ["a", "b"])
    with pytest.raises(ValueError, match=r"column 'a' has 1 value.*minimum 0\)"):
        apply_transform(np.array([[0.0], [2.0]]), "log_diff", ["a"])


# ---- splits and scaling -----------------------------------------------------------------------
def _prepared(**kw):
    options = {"lookback": 6, "horizon": 3, "val_fraction": 0.2, "test_fraction": 0.2} | kw
    return forecast.prepare(forecast.sine_series(length=60), **options)


def test_splits_are_chronological_and_disjoint_in_targets():
    data = _prepared()
    s = data.spans
    assert (s.train_end, s.val_end, s.length) == (36, 48, 60)  # 60 - 12 - 12
    target_rows = {}
    for split, (start, stop) in (("train", (0, 36)), ("val", (36, 48)), ("test", (48, 60))):
        origins = data.origins[split]
        rows = origins[:, None] + np.arange(3)[None, :]
        assert rows.min() >= start and rows.max() < stop, split
        assert np.all(np.diff(origins) == 1)
        target_rows[split] = set(rows.reshape(-1).tolist())
    assert max(target_rows["train"]) < min(target_rows["val"])
    assert max(target_rows["val"]) < min(target_rows["test"])
    # training inputs stay inside the training span; val/test windows read earlier context
    assert data.origins["train"].min() - 6 >= 0
    assert data.origins["val"][0] == 36 and data.origins["val"][0] - 6 < 36
    assert data.origins["test"][-1] == 57 and data.num_windows("val") == 12 - 3 + 1


def test_splits_by_dates():
    series = forecast.load_dataset("goog")
    data = forecast.prepare(series, lookback=10, horizon=2, val_start="2007-06-01",
                            test_start="2008-01-01")
    index = data.index
    assert index[data.spans.train_end] >= pd.Timestamp("2007-06-01")
    assert index[data.spans.train_end - 1] < pd.Timestamp("2007-06-01")
    assert index[data.spans.val_end] >= pd.Timestamp("2008-01-01")
    times = data.target_times("test")
    assert times.min() >= np.datetime64("2008-01-01")
    with pytest.raises(ValueError, match="give both val_start and test_start"):
        forecast.prepare(series, lookback=10, horizon=2, val_start="2007-06-01")


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_scaler_statistics_are_the_training_span(kind):
    data = _prepared(scaler=kind)
    train = data.levels_TxC[:data.spans.train_end, 0]
    if kind == "minmax":
        expected_shift, expected_scale = train.min(), train.max() - train.min()
    else:
        expected_shift, expected_scale = train.mean(), train.std()
    np.testing.assert_allclose(data.scaler.shift, [expected_shift], rtol=1e-12)
    np.testing.assert_allclose(data.scaler.scale, [expected_scale], rtol=1e-12)
    # and they differ from the statistics of the whole series (the notes' pitfall)
    whole = data.levels_TxC[:, 0]
    assert not np.isclose(whole.min() if kind == "minmax" else whole.mean(), expected_shift)
    scaled = data.scaler.transform(data.levels_TxC)
    np.testing.assert_allclose(data.scaler.inverse_transform(scaled), data.levels_TxC)


def test_scaler_refuses_to_fit_beyond_training_span():
    spans = split_spans(20, lookback=2, horizon=1)
    with pytest.raises(ValueError, match="fit_on='all' is not accepted: scalers are fitted on "
                                         "the training span only"):
        fit_scaler("minmax", np.zeros((20, 1)), spans, fit_on="all")
    with pytest.raises(ValueError, match="scaler='robust' is not accepted"):
        fit_scaler("robust", np.zeros((20, 1)), spans)


def _write_series(path, values):
    dates = pd.date_range("2000-01-01", periods=len(values), freq="D")
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "value": values}).to_csv(path, index=False)
    return str(path)


def _task_options(path):
    return {"dataset": None, "path": path, "target": "value", "time_column": "date",
            "lookback": 6, "horizon": 2, "val_fraction": 0.2, "test_fraction": 0.25}


def test_changing_the_test_span_changes_nothing_in_training(tmp_path):
    values = 10.0 + np.sin(np.arange(80) / 3.0) + 0.1 * np.arange(80)
    leaked = values.copy()
    leaked[60:] *= 1000.0  # the test span: the last 0.25 * 80 = 20 rows
    clean_task = make_task("forecast", **_task_options(_write_series(tmp_path / "a.csv", values)))
    dirty_task = make_task("forecast", **_task_options(_write_series(tmp_path / "b.csv", leaked)))
    assert clean_task.data.spans.val_end == 60
    # titles name the file, not the folder it lies in
    assert clean_task.label().startswith("forecast(a.csv: target=value, ") and (
        str(tmp_path) not in clean_task.label())
    np.testing.assert_array_equal(clean_task.data.scaler.shift, dirty_task.data.scaler.shift)
    np.testing.assert_array_equal(clean_task.data.scaler.scale, dirty_task.data.scaler.scale)
    for i in range(3):
        key = jax.random.key(i)
        a, b = clean_task.sample(key, 16), dirty_task.sample(key, 16)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(clean_task.eval_batch(None).x, dirty_task.eval_batch(None).x)
    assert not np.array_equal(clean_task.test_batch().y, dirty_task.test_batch().y)  # has teeth
    # fitting on all rows (the notes' MinMaxScaler) would have changed the training inputs
    assert not np.isclose(np.ptp(values), np.ptp(leaked))

    overrides = [f"task.{k}={'null' if v is None else v}"
                 for k, v in _task_options(clean_task.path).items()]
    cfg = compose(["task=forecast", *overrides, "train.steps=2", "train.log_every=2",
                   "cell.hidden_size=4", "train.num_seeds=1", "train.batch_size=8",
                   "gradients.every=0"])
    trainer = make_train(cfg)
    assert trainer.task == clean_task and trainer.task != dirty_task
    state = jax.jit(jax.vmap(trainer.init))(seed_keys(cfg))  # params depend on the key alone
    losses = [np.asarray(jax.jit(jax.vmap(t.run_chunk))(state)[1]["loss"])
              for t in (trainer, dataclasses.replace(trainer, task=dirty_task))]
    np.testing.assert_array_equal(losses[0], losses[1])
    assert np.isfinite(losses[0]).all()


def test_final_metrics_score_the_validation_windows_in_units_by_hand(tmp_path):
    """The main metric sweeps rank forecasts by: each seed's validation MASE in the series'
    units. A model whose scaled forecast is the truth plus c is off by c * (training max -
    training min) in units (min-max scaling fitted on the training span), at every window and
    step; MASE divides by the training span's mean |y_t - y_{t-1}| (season 1)."""
    from types import SimpleNamespace

    values = 10.0 + np.sin(np.arange(80) / 3.0) + 0.1 * np.arange(80)
    task = make_task("forecast", **_task_options(_write_series(tmp_path / "a.csv", values)))
    train = values[:44]  # 80 rows * (1 - 0.2 - 0.25)
    assert task.data.spans.train_end == 44
    offsets = np.array([0.0, 0.1, -0.3, 0.2], np.float32)
    model = SimpleNamespace(apply=lambda c, batch: batch.y + c)
    out = task.final_metrics(model, SimpleNamespace(params=jax.numpy.asarray(offsets)),
                             np.array([True, True, True, False]))
    error = np.abs(offsets[:3]) * np.ptp(train)
    np.testing.assert_allclose(out["val_mae"][:3], error, atol=1e-4)
    np.testing.assert_allclose(out["val_rmse"][:3], error, atol=1e-4)
    np.testing.assert_allclose(out["val_mase"][:3], error / np.mean(np.abs(np.diff(train))),
                               atol=1e-4)
    assert out["val_mase"][1] > 0.01  # has teeth
    assert all(np.isnan(v[3]) for v in out.values())  # the diverged seed
    # the naive baseline beside them: each window's last input value, every step
    origins = np.arange(44, 59)  # validation rows 44..59, windows of 2 target steps
    actual = values[origins[:, None] + np.arange(2)]
    naive_error = np.abs(actual - values[origins - 1][:, None])
    base = task.baselines()
    assert base["val_mae"] == pytest.approx(naive_error.mean())
    assert base["val_mase"] == pytest.approx(naive_error.mean()
                                             / np.mean(np.abs(np.diff(train))))
    assert type(task).main_metric == "val_mase" and not type(task).maximize


# ---- baselines --------------------------------------------------------------------------------
# (the statsforecast baselines against hand computations: tests/test_forecast_baselines.py)
def test_ar_recovers_an_exact_linear_recursion():
    # y_t = 5 + sin(0.3 t) satisfies y_t = 2cos(0.3) y_{t-1} - y_{t-2} + 5 (2 - 2cos(0.3))
    t = np.arange(80)
    y = 5.0 + np.sin(0.3 * t)
    a = 2.0 * np.cos(0.3)
    coef = baselines.fit_ar(y, 2, 3, train_end=60)
    np.testing.assert_allclose(coef[0], [5.0 * (2.0 - a), a, -1.0], rtol=1e-7, atol=1e-8)
    origins = np.arange(60, 78)
    pred = baselines.ar(y, origins, 3, train_end=60, order=2)
    np.testing.assert_allclose(pred, y[origins[:, None] + np.arange(3)[None, :]], atol=1e-8)


# ---- metrics ----------------------------------------------------------------------------------
def test_metrics_by_hand():
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    pred = np.array([[2.0, 2.0], [1.0, 4.0]])  # errors -1, 0, 2, 0
    train_y = np.array([1.0, 3.0, 2.0, 5.0])  # |diffs| 2, 1, 3: naive in-sample MAE 2
    m = metrics.forecast_metrics(actual, pred, train_y, season_length=1)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 4))
    assert m["mae"] == pytest.approx(3 / 4)
    assert m["mase"] == pytest.approx(3 / 8)
    # sMAPE terms 2*1/(1+2), 0, 2*2/(3+1), 0 -> mean 5/12, in percent
    assert m["smape"] == pytest.approx(100 * 5 / 12)
    assert m["rmse_h1"] == pytest.approx(np.sqrt(5 / 2)) and m["rmse_h2"] == 0.0
    assert m["mae_h1"] == pytest.approx(1.5) and m["mase_h1"] == pytest.approx(0.75)
    assert m["smape_h1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    # seasonal scale, m = 2: |2 - 1|, |5 - 3|, |4 - 2| -> 5/3
    assert metrics.mase_scale([1.0, 3.0, 2.0, 5.0, 4.0], 2) == pytest.approx(5 / 3)
    # sMAPE: 0/0 counts as 0, a zero forecast of a non-zero value as 200
    assert metrics.smape([0.0, 2.0], [0.0, 0.0]) == pytest.approx(100.0)
    assert np.isnan(metrics.forecast_metrics(actual, pred, [1.0, 1.0, 1.0])["mase"])


# ---- data sets and CSV errors -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(forecast.DATASETS))
def test_dataset_loads_offline(name):
    info = forecast.DATASETS[name]
    series = forecast.load_dataset(name)
    frame = series.frame
    assert series.frequency == info.frequency and series.season_length == info.season_length
    assert series.target in frame.columns and set(series.features) <= set(frame.columns)
    assert not frame.isna().any().any() and len(frame) > 0
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    if series.frequency is None:
        assert isinstance(frame.index, pd.RangeIndex)
    elif series.frequency == "B":  # trading days: business days less exchange holidays
        assert set(frame.index.day_of_week) <= {0, 1, 2, 3, 4}
        assert frame.index.isin(pd.bdate_range(frame.index[0], frame.index[-1])).all()
    else:
        expected = pd.date_range(frame.index[0], periods=len(frame), freq=series.frequency)
        assert frame.index.equals(expected)


def test_documented_dataset_facts():
    assert len(forecast.load_dataset("co2").frame) == 526  # 1958-03 .. 2001-12, monthly
    goog = forecast.load_dataset("goog").frame
    assert list(goog.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert goog.index[0] == pd.Timestamp("2004-08-19") and len(goog) == 1047
    assert forecast.load_dataset("macrodata").frame.shape == (203, 12)
    air = forecast.load_dataset("air_passengers").frame["passengers"]
    assert len(air) == 144 and air.index[0] == pd.Timestamp("1949-01-01")
    assert air.iloc[:3].tolist() == [112.0, 118.0, 132.0] and air.iloc[-1] == 432.0  # B&J G
    with pytest.raises(ValueError, match=r"dataset='airline' is not a registered data set; "
                                         r"registered: \["):
        forecast.load_dataset("airline")


def _csv(tmp_path, text, name="prices.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_infinite_values_year_columns_and_repeated_features(tmp_path):
    """An infinite value anywhere is refused when the CSV is read (it was taken as data: in a
    feature column it trained to wrong numbers, in the validation or test span the run failed
    after training); a time column of four-digit whole numbers is read as years (pandas read
    them as nanoseconds since 1970), other numbers are refused; a feature listed twice is
    refused."""
    path = _csv(tmp_path, "Date,Close,Temp\n2020-01-01,1,0.5\n2020-01-02,2,inf\n"
                          "2020-01-03,3,-inf\n")
    with pytest.raises(ValueError, match=r"column 'Temp' in .*prices.csv has 2 infinite "
                                         r"value\(s\), the first at 2020-01-02;"):
        forecast.load_csv(path, "Close", ["Close", "Temp"], time_column="Date")
    # in file order: the data row, from 0 (pandas' index), said as such
    with pytest.raises(ValueError, match=r"the first at data row 1 \(counting from 0 after "
                                         r"the header\)"):
        forecast.load_csv(path, "Close", ["Close", "Temp"])
    assert forecast.load_csv(path, "Close", time_column="Date").frame["Close"].tolist() == [
        1.0, 2.0, 3.0]  # the column not used is not read
    years = forecast.load_csv(_csv(tmp_path, "year,v\n1872,2\n1871,1\n1873,3\n", "y.csv"),
                              "v", time_column="year").frame
    assert list(years.index) == [pd.Timestamp(f"{y}-01-01") for y in (1871, 1872, 1873)]
    assert years["v"].tolist() == [1.0, 2.0, 3.0]  # sorted by year
    for text in ("t,v\n0.5,1\n1.5,2\n", "t,v\n1,1\n2,2\n", "t,v\n1871.5,1\n1872,2\n"):
        with pytest.raises(ValueError, match=r"time_column 't' in .* holds numbers that are "
                                             r"not years \(e\.g\. "):
            forecast.load_csv(_csv(tmp_path, text, "t.csv"), "v", time_column="t")
    with pytest.raises(ValueError, match=r"features lists 'Close' more than once"):
        forecast.load_csv(path, "Close", ["Close", "Close"], time_column="Date")
    with pytest.raises(ValueError, match=r"forecast task: features lists 'Close' more than "
                                         r"once: \['Close', 'Close'\]"):
        make_task("forecast", dataset=None, path=str(path), target="Close",
                  features=["Close", "Close"], time_column="Date")
    with pytest.raises(ValueError, match=r"path='.*prices.csv' and dataset='nile' name two "
                                         r"series"):
        make_task("forecast", dataset="nile", path=str(path), target="Close",
                  time_column="Date")


def test_csv_errors_name_the_column(tmp_path):
    path = _csv(tmp_path, "Date,Close\n2020-01-03,3\n2020-01-01,1\n2020-01-02,\n2020-01-06,\n"
                          "2020-01-07,7\n")
    with pytest.raises(ValueError, match=r"column 'Closee' not found in .*prices.csv; "
                                         r"available columns: \['Date', 'Close'\]"):
        forecast.load_csv(path, "Closee", time_column="Date")
    with pytest.raises(ValueError, match=r"column 'Close' in .* has 2 missing \(NaN\) value\(s\)"
                                         r".*set missing=interpolate or missing=drop"):
        forecast.load_csv(path, "Close", time_column="Date")
    filled = forecast.load_csv(path, "Close", time_column="Date", missing="interpolate").frame
    # sorted by date; 01-02 between 1 and 3; 01-06 between 01-03 (3) and 01-07 (7), in time
    np.testing.assert_allclose(filled["Close"], [1.0, 2.0, 3.0, 6.0, 7.0])
    dropped = forecast.load_csv(path, "Close", time_column="Date", missing="drop").frame
    assert dropped["Close"].tolist() == [1.0, 3.0, 7.0]
    bad = _csv(tmp_path, "Close\n1\nabc\n3\n", "bad.csv")
    with pytest.raises(ValueError, match=r"column 'Close' in .* has 1 non-numeric value\(s\), "
                                         r"e.g. \['abc'\]"):
        forecast.load_csv(bad, "Close")
    with pytest.raises(ValueError, match=r"missing='zero' is not accepted"):
        forecast.load_csv(path, "Close", missing="zero")


def test_too_short_series_states_lengths(tmp_path):
    with pytest.raises(ValueError, match=r"series 'linear' is too short: 9 rows; needs at least "
                                         r"lookback=12 \+ horizon=1 \+ validation span \+ test "
                                         r"span = 12 \+ 1 \+ 1 \+ 2 = 16 rows"):
        make_task("forecast", dataset="linear", lookback=12)
    with pytest.raises(ValueError, match=r"12 \+ 1 \+ 1 \+ 1 \+ 2 = 17 rows"):
        make_task("forecast", dataset="linear", lookback=12, transform="diff")
    # a series long enough for the lookback whose validation span is shorter than the horizon
    path = _csv(tmp_path, "y\n" + "\n".join(str(i) for i in range(40)) + "\n", "long.csv")
    with pytest.raises(ValueError, match=r"the validation span has 2 rows .* needs at least "
                                         r"horizon=3 rows"):
        make_task("forecast", path=str(path), target="y", lookback=2, horizon=3,
                  val_fraction=0.05)


def test_task_option_errors(tmp_path):
    with pytest.raises(ValueError, match=r"scaler='robust' is not accepted"):
        make_task("forecast", scaler="robust")
    with pytest.raises(ValueError, match=r"path='x.csv' needs target"):
        make_task("forecast", path="x.csv")
    with pytest.raises(ValueError, match=r"AR\(40\) needs at least 41 training windows"):
        make_task("forecast", dataset="nile", lookback=4, ar_order=40)
    with pytest.raises(ValueError, match=r"transform='log' needs positive values; column "
                                         r"'SUNACTIVITY' has 3 value"):
        make_task("forecast", dataset="sunspots", transform="log")
    # the data library's messages, under the task's name
    with pytest.raises(ValueError, match=r"forecast task: dataset='sunspot' is not a "):
        make_task("forecast", dataset="sunspot")
    with pytest.raises(ValueError, match=r"forecast task: test_fraction must be in \(0, 1\)"):
        make_task("forecast", dataset="nile", test_fraction=1.5)
    with pytest.raises(ValueError, match=r"forecast task: val_start='abc' is not a date"):
        make_task("forecast", dataset="nile", val_start="abc", test_start="1950")
    # MASE's scale is the seasonal naive error inside the training span: m in [1, span)
    with pytest.raises(ValueError, match=r"season_length must be an int >= 1 or null; got 0"):
        make_task("forecast", dataset="nile", season_length=0)
    with pytest.raises(ValueError, match=r"season_length=500 must be shorter than the "
                                         r"training span \(70 rows of 'nile'\)"):
        make_task("forecast", dataset="nile", season_length=500)


# ---- the task ---------------------------------------------------------------------------------
def test_task_samples_are_training_windows():
    task = make_task("forecast", dataset="sine", lookback=8, horizon=3, features=["value"])
    assert task.features == ("value",) and hash(task) == hash(dataclasses.replace(task))
    assert (task.input_size, task.output_size, task.readout) == (1, 3, "last")
    assert task.label() == "forecast(sine: features=('value',), lookback=8, horizon=3)"
    keys = jax.random.split(jax.random.key(3), 2)
    batch = jax.jit(jax.vmap(lambda k: task.sample(k, 5)))(keys)
    assert batch.x.shape == (2, 5, 8, 1) and batch.y.shape == (2, 5, 3)
    x_train, y_train = task.data.windows("train")
    for x, y in zip(np.asarray(batch.x).reshape(10, 8, 1), np.asarray(batch.y).reshape(10, 3),
                    strict=True):
        k = np.flatnonzero(np.all(np.isclose(x_train, x, atol=1e-6), axis=(1, 2)))
        assert k.size >= 1
        np.testing.assert_allclose(y_train[k[0]], y, atol=1e-6)
    x_val, y_val = task.data.windows("val")
    np.testing.assert_allclose(task.eval_batch(None).x, x_val, atol=1e-6)
    np.testing.assert_allclose(task.eval_batch(None).y, y_val, atol=1e-6)
    np.testing.assert_allclose(task.test_batch().y, task.data.windows("test")[1], atol=1e-6)


def test_end_to_end_training_and_test_metrics():
    cfg = compose(["task=forecast", "task.dataset=sine", "task.lookback=8", "task.horizon=3",
                   "task.transform=diff", "train.steps=4", "train.log_every=2",
                   "cell.hidden_size=8", "train.num_seeds=1", "train.batch_size=8",
                   "gradients.every=0"])
    trainer = make_train(cfg)
    task = trainer.task
    state = jax.jit(jax.vmap(trainer.init))(seed_keys(cfg))
    state, m = jax.jit(jax.vmap(trainer.run_chunk))(state)
    assert np.isfinite(np.asarray(m["loss"])).all()
    pred_SxNxH = jax.vmap(lambda p: trainer.apply(p, task.test_batch()))(state.params)
    assert pred_SxNxH.shape == (1, task.data.num_windows("test"), 3)
    result = task.evaluate_forecasts(pred_SxNxH[0], "test")
    assert {"rmse", "mae", "mase", "smape", "rmse_h3", "smape_h1"} <= set(result)
    assert all(np.isfinite(v) for v in result.values())
    table = task.baseline_table("test")
    assert list(table.index) == ["naive", "seasonal_naive", "drift", "mean", "auto_ets",
                                 "auto_arima", "auto_theta", "ar(8)"]
    assert np.isfinite(table.to_numpy()).all()
    # a perfect forecast scores zero error through the inverse scaling and differencing
    perfect = task.evaluate_forecasts(task.data.windows("test")[1], "test")
    assert perfect["rmse"] == pytest.approx(0.0, abs=1e-9)
    report = task.final_report(trainer, state, np.array([True]))["forecast"]
    assert report["model"]["rmse"] == pytest.approx(result["rmse"], rel=1e-5)
    assert set(report["baselines"]) == set(table.index)
