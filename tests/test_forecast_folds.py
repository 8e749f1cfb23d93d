"""Rolling-origin evaluation: fold spans and windows on a series whose value is its row index,
pooling over folds and seeds by hand, and a tiny end-to-end run with task.folds=3."""

import contextlib
import dataclasses
import io
import json

import jax
import numpy as np
import pandas as pd
import pytest

from rnnlab import forecast, report
from rnnlab.config import compose
from rnnlab.forecast.evaluation import combine_folds, compare
from rnnlab.forecast.scaling import Spans, fold_spans, split_spans
from rnnlab.loop import execute
from rnnlab.tasks import make_task
from rnnlab.train import make_train, seed_keys


def _row_index_series(n=100):
    frame = pd.DataFrame({"value": np.arange(n, dtype=np.float64)},
                         index=pd.RangeIndex(n, name="step"))
    return forecast.Series("rows", frame, "value", ("value",), None, 1)


def test_fold_spans_step_through_the_test_span():
    spans = split_spans(100, lookback=5, horizon=2, val_fraction=0.1, test_fraction=0.2)
    assert spans == Spans(70, 80, 100)
    # 20 test rows in 3 blocks of 7, 7, 6 rows; each fold keeps 10 validation rows before
    folds = fold_spans(spans, 3, lookback=5, horizon=2)
    assert folds == [Spans(70, 80, 87), Spans(77, 87, 94), Spans(84, 94, 100)]
    assert fold_spans(spans, 1, lookback=5, horizon=2) == [spans]
    with pytest.raises(ValueError, match=r"folds=11 cuts the test span of 20 rows into blocks "
                                         r"of 1 rows, fewer than horizon=2; use at most 10"):
        fold_spans(spans, 11, lookback=5, horizon=2)
    with pytest.raises(ValueError, match="folds must be an int >= 1; got 0"):
        fold_spans(spans, 0, lookback=5, horizon=2)


@pytest.mark.parametrize("transform", ["none", "diff"])
def test_fold_windows_scaler_and_baselines_by_row_index(transform):
    series = _row_index_series()
    offset = 1 if transform == "diff" else 0
    expected = [(70, 80, 87), (77, 87, 94), (84, 94, 100)]
    for k, (train_end, test_start, stop) in enumerate(expected):
        data = forecast.prepare(series, lookback=5, horizon=2, val_fraction=0.1,
                                test_fraction=0.2, folds=3, fold=k, transform=transform,
                                scaler="minmax", ar_order=2)
        assert (data.fold, data.folds) == (k, 3)
        assert data.spans == Spans(train_end, test_start, stop)
        assert data.levels_TxC.shape[0] == stop  # nothing after the fold's test block
        # test windows: origins test_start .. stop - 2, targets (value = row) t0, t0 + 1
        origins = data.origins["test"]
        np.testing.assert_array_equal(origins, np.arange(test_start, stop - 1))
        np.testing.assert_array_equal(data.actuals("test"),
                                      origins[:, None] + np.arange(2)[None, :])
        # training windows: every target row before train_end, inputs from row `offset`
        train = data.origins["train"]
        assert train.min() == 5 + offset and train.max() + 2 == train_end
        # the scaler saw the fold's training rows only: min-max over rows [offset, train_end)
        if transform == "none":
            assert data.scaler.shift[0] == 0.0 and data.scaler.scale[0] == train_end - 1
            x, _ = data.windows("test")
            np.testing.assert_allclose(x[:, -1, 0] * (train_end - 1), origins - 1)
        else:  # differences of a line are all 1: constant, scale 1 by convention
            assert data.scaler.shift[0] == 1.0 and data.scaler.scale[0] == 1.0
        # a perfect model-space forecast gives zero error in units
        _, y = data.windows("test")
        assert data.evaluate(y, "test")["rmse"] == pytest.approx(0.0, abs=1e-9)
        # the mean baseline is the fold's training mean, (train_end - 1) / 2
        forecasts = data.baseline_forecasts("test")
        np.testing.assert_allclose(forecasts["mean"], (train_end - 1) / 2)
        np.testing.assert_array_equal(forecasts["naive"][:, 0], origins - 1)
    with pytest.raises(ValueError, match=r"fold must be an int in \[0, 2\] \(folds=3\)"):
        forecast.prepare(series, lookback=5, horizon=2, folds=3, fold=3)
    with pytest.raises(ValueError, match="forecast task: folds must be an int >= 1; got 0"):
        make_task("forecast", dataset="sine", folds=0)
    with pytest.raises(ValueError, match=r"folds=100 cuts the test span of 80 rows"):
        make_task("forecast", dataset="sine", folds=100)


def test_each_fold_fits_its_baselines_on_its_training_rows_only():
    n = 120
    t = np.arange(n, dtype=np.float64)
    y = 20 + 0.3 * t + np.sin(t / 2) + 0.2 * np.random.default_rng(1).standard_normal(n)
    spoiled = y.copy()
    spoiled[100] += 1000.0  # in the test span [96, 120), blocks [96, 104), [104, 112), [112,
    # 120): a target of fold 0, and history (an input) for the later windows of every fold

    def fold_data(values, k):
        frame = pd.DataFrame({"value": values}, index=pd.RangeIndex(n, name="step"))
        return forecast.prepare(forecast.Series("s", frame, "value", ("value",), None, 1),
                                lookback=6, horizon=1, folds=3, fold=k, ar_order=3)

    for k in range(3):
        clean, dirty = fold_data(y, k), fold_data(spoiled, k)
        assert clean.spans == dirty.spans and clean.spans.train_end <= 100
        np.testing.assert_array_equal(clean.scaler.shift, dirty.scaler.shift)
        np.testing.assert_array_equal(clean.scaler.scale, dirty.scaler.scale)
        a, b = clean.baseline_forecasts("test"), dirty.baseline_forecasts("test")
        before = clean.origins["test"] <= 100  # windows whose inputs precede the outlier
        for name in a:
            np.testing.assert_array_equal(a[name][before], b[name][before], err_msg=name)
        np.testing.assert_array_equal(a["mean"], b["mean"])  # a fitted constant
        last_c, last_d = clean.anchors("test")[:, None], dirty.anchors("test")[:, None]
        np.testing.assert_allclose(a["drift"] - last_c, b["drift"] - last_d)  # fitted slope
        # has teeth: every fold sees the outlier (a test target of fold 0, a validation row
        # of folds 1 and 2), yet no fit moved
        assert clean.spans.train_end <= 100 < clean.spans.length
        assert not np.array_equal(clean.target_levels, dirty.target_levels)
    assert before.sum() == 0 and fold_data(y, 0).origins["test"].max() >= 100


def _fold(k, net, base):
    return {"fold": k, "windows": 4,
            "per_seed": [None if v is None else {"rmse": v, "mae": v / 2} for v in net],
            "baselines": {n: {"rmse": v, "mae": v / 2} for n, v in base.items()}}


def test_pooling_over_folds_and_seeds_by_hand():
    folds = [_fold(0, [9.0, 11.0], {"naive": 20.0, "ets": 12.0}),
             _fold(1, [7.0, None], {"naive": 10.0, "ets": 8.0})]
    out = combine_folds(folds)
    assert out["folds"] == 2 and out["windows"] == 8 and len(out["per_seed"]) == 4
    assert out["model"]["rmse"] == pytest.approx(9.0)  # (9 + 11 + 7) / 3, the diverged left out
    assert out["model_std"]["rmse"] == pytest.approx(np.std([9.0, 11.0, 7.0]))
    assert out["baselines"]["ets"]["rmse"] == 10.0 and out["baselines_std"]["ets"]["rmse"] == 2.0
    c = out["comparison"]
    assert c["best_baseline"] == "ets" and c["best_baseline_mean"] == 10.0
    assert c["skill"] == pytest.approx(1 - 9.0 / 10.0)
    d = np.array([9 - 12, 11 - 12, 7 - 8], dtype=float)  # paired with each fold's ETS
    assert c["difference_mean"] == pytest.approx(d.mean())
    assert c["difference_std"] == pytest.approx(d.std())
    assert c["beyond_spread"] is True  # |-5/3| > 0.943
    assert c["skill_vs"]["naive"] == pytest.approx(1 - 9.0 / 15.0)
    noisy = compare([_fold(0, [9.0, 15.0], {"ets": 12.0}), _fold(1, [8.0], {"ets": 8.0})])
    assert noisy["difference_mean"] == pytest.approx(0.0) and noisy["beyond_spread"] is False
    assert compare([_fold(0, [9.0], {"ets": 12.0})])["beyond_spread"] is None


def _tiny(tmp_path):
    # 90 rows of a noisy sine (m = 1 for a CSV: quick ARIMA/ETS fits); the test span is the
    # last 27 rows, three blocks of 9
    t = np.arange(90)
    y = 5 + np.sin(t / 3) + 0.1 * np.random.default_rng(0).standard_normal(90)
    pd.DataFrame({"value": y}).to_csv(tmp_path / "s.csv", index=False)
    return ["task=forecast", f"task.path={tmp_path / 's.csv'}", "task.target=value",
            "task.lookback=4", "task.horizon=2", "task.test_fraction=0.3", "task.folds=3",
            "cell.hidden_size=4", "train.steps=2", "train.log_every=2", "train.num_seeds=2",
            "train.batch_size=8", "gradients.enabled=false", "logger.progress=false",
            "logger.wandb.mode=disabled", "logger.plots=false"]


def test_final_report_pools_the_folds_it_refits(tmp_path):
    cfg = compose(_tiny(tmp_path))
    trainer = make_train(cfg)
    task = trainer.task
    assert (task.data.fold, task.data.folds) == (2, 3)  # the logged fold is the last
    state = jax.jit(jax.vmap(trainer.init))(seed_keys(cfg))  # untrained: plumbing only
    calls = []

    def refit(fold_task):  # stands in for the loop's retraining; seed 1 "diverges" on fold 0
        calls.append(fold_task.fold)
        alive = np.array([True, fold_task.fold != 0])
        return dataclasses.replace(trainer, task=fold_task), state, alive

    with pytest.raises(ValueError, match=r"folds=3 needs final_report\(\.\.\., refit=\.\.\.\)"):
        task.final_report(trainer, state, np.array([True, True]))
    f = task.final_report(trainer, state, np.array([True, True]), refit=refit)["forecast"]
    assert calls == [0, 1]
    assert [m is None for m in f["per_seed"]] == [False, True, False, False, False, False]
    by_hand = []
    for k in range(3):
        fold_task = dataclasses.replace(task, fold=k)
        pred = jax.vmap(lambda p, t=fold_task: trainer.apply(p, t.test_batch()))(state.params)
        expected = [fold_task.evaluate_forecasts(pred[s], "test")["rmse"] for s in range(2)]
        got = [m["rmse"] for m in f["per_fold"][k]["per_seed"] if m is not None]
        np.testing.assert_allclose(got, expected[:len(got)], rtol=1e-6)
        by_hand += expected[:len(got)]
    assert f["model"]["rmse"] == pytest.approx(np.mean(by_hand), rel=1e-6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folds")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = execute(compose(_tiny(root)), root / "run")
    return root / "run", summary, printed.getvalue()


@pytest.mark.slow  # three trainings, three compilations: about 20 s of CPU
def test_tiny_end_to_end_run_with_three_folds(tiny_run):
    run_dir, summary, printed = tiny_run
    f = summary["forecast"]
    assert f["folds"] == 3 and len(f["per_fold"]) == 3 and len(f["per_seed"]) == 6
    # 90 rows: test span [63, 90) in blocks of 9 rows, validation 9 rows before each; H = 2
    assert [r["test_rows"] for r in f["per_fold"]] == [[63, 72], [72, 81], [81, 90]]
    assert [r["train_rows"] for r in f["per_fold"]] == [54, 63, 72]
    assert [r["windows"] for r in f["per_fold"]] == [8, 8, 8] and f["windows"] == 24
    rmse = [m["rmse"] for m in f["per_seed"]]
    assert f["model"]["rmse"] == pytest.approx(np.mean(rmse))
    assert f["model_std"]["rmse"] == pytest.approx(np.std(rmse))
    names = {"naive", "seasonal_naive", "drift", "mean", "auto_ets", "auto_arima",
             "auto_theta", "ar(4)"}
    assert set(f["baselines"]) == names
    for n in names:
        per_fold = [r["baselines"][n]["rmse"] for r in f["per_fold"]]
        assert f["baselines"][n]["rmse"] == pytest.approx(np.mean(per_fold))
        assert f["baselines_std"][n]["rmse"] == pytest.approx(np.std(per_fold))
    best = min(names, key=lambda n: f["baselines"][n]["rmse"])
    assert f["comparison"]["best_baseline"] == best
    assert f["comparison"]["skill"] == pytest.approx(
        1 - np.mean(rmse) / f["baselines"][best]["rmse"])
    # the plot record is the logged (last) fold's
    assert len(f["series"]["actual"]) == 8
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["forecast"]["comparison"]["best_baseline"] == best
    assert f"{best:<16}" in printed and "<- best baseline" in printed
    assert f"skill vs {best}: 1 - network/baseline = {f['comparison']['skill']:+.3f}" in printed


@pytest.mark.slow  # shares the end-to-end run
def test_report_names_the_best_baseline_and_the_skill(tiny_run, tmp_path):
    run_dir, summary, _ = tiny_run
    f = summary["forecast"]
    c = f["comparison"]
    written = report.make_report(run_dir, tmp_path)
    md = written["report"].read_text()
    best = c["best_baseline"]
    assert "24 windows over 3 rolling origins (folds)" in md
    assert f"Best baseline (lowest mean RMSE): **{best}** " in md
    run_line = next(line for line in md.splitlines() if line.startswith("| lstm |"))
    side = "better" if c["difference_mean"] < 0 else "worse"
    verdict = {True: f"yes, network {side}", False: "no"}[c["beyond_spread"]]
    assert run_line.endswith(f"| {c['skill']:+.3f} | {verdict} |")
    mean, sd = f["baselines"]["naive"]["rmse"], f["baselines_std"]["naive"]["rmse"]
    val = summary["baselines"]["val_mase"]  # the naive forecast's validation MASE
    assert f"| baseline: naive | | | | | {val:.4g} | {mean:.4g} ± {sd:.2g} |" in md.replace(
        "**", "")
    row = pd.read_csv(written["results"]).iloc[0]
    assert row["test_best_baseline"] == best and row["test_folds"] == 3
