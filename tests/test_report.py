"""The report command on a small sweep, and the matched parameter budget."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnlab import report
from rnnlab.checks import ConfigError
from rnnlab.config import compose
from rnnlab.jobs import record_failed_job
from rnnlab.loop import execute
from rnnlab.train import make_train, param_count

TINY = ["cell.hidden_size=8", "task.length=2", "task.copy_length=3", "train.steps=4",
        "train.log_every=2", "train.num_seeds=2", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
        "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for i, cell in enumerate(["lstm", "rnn"]):
        execute(compose([f"cell={cell}", *TINY]), root / f"{i}_copy_{cell}")
    bad = root / "2_copy_gru"
    with pytest.raises(ConfigError) as err:  # refused before anything is written ...
        execute(compose(["cell=gru", *TINY, "task.length=0"]), bad)
    record_failed_job(bad, err.value)  # ... and recorded as the command line does in a sweep
    return root


def test_report_tables_and_figures(sweep, tmp_path):
    written = report.make_report(sweep, tmp_path)
    df = pd.read_csv(written["results"])
    assert sorted(df["cell"].dropna()) == ["lstm", "rnn"]
    assert sorted(df["status"]) == ["failed", "ok", "ok"]
    for _, row in df[df.status == "ok"].iterrows():
        summary = json.loads((sweep / f"{'0' if row.cell == 'lstm' else '1'}_copy_{row.cell}"
                              / "summary.json").read_text())
        assert row["loss_mean"] == pytest.approx(summary["final"]["loss"]["mean"])
        assert row["baseline_loss"] == pytest.approx(3 * np.log(8) / 8)
        assert row["param_count"] == summary["param_count"]
    md = written["report"].read_text()
    assert "| lstm | 2 |" in md and "| rnn | 2 |" in md and "| baseline |" in md  # T = length
    assert "length must be an int >= 1; got 0" in md
    assert written["gradient_flow_copy"].stat().st_size > 0


def test_report_of_a_partial_sweep_lists_the_jobs_without_a_summary(sweep, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(sweep, partial)
    (partial / "3_copy_rnn" / ".hydra").mkdir(parents=True)  # started, never finished
    written = report.make_report(partial, tmp_path / "out")
    md = written["report"].read_text()
    assert "## Jobs without a summary" in md and "3_copy_rnn" in md
    assert sorted(pd.read_csv(written["results"])["status"]) == ["failed", "ok", "ok"]


def test_report_cli_errors_on_an_empty_folder(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err
    (tmp_path / "a.csv").write_text("x\n")  # --out at a file: one line, nothing written
    assert report.main([str(tmp_path), "--out", str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'a.csv'} is a file" in err and "Traceback" not in err
    assert (tmp_path / "a.csv").read_text() == "x\n"


def _lstm_count(H, V=10, O=9):
    # one-hot inputs (no parameters), LSTM (Keras formula), dense output layer
    return 4 * (H * V + H * H + H) + H * O + O


@pytest.mark.parametrize("budget", [5_000, 20_000])
def test_param_budget_picks_the_nearest_width(budget):
    trainer = make_train(compose(["cell=lstm", f"model.param_budget={budget}"]))
    width = trainer.model.cells[0].hidden_size
    counts = {H: _lstm_count(H) for H in range(1, 200)}
    expected = min(counts, key=lambda H: (abs(counts[H] - budget), H))
    assert width == expected
    assert param_count(trainer) == counts[width]


def test_param_budget_matches_cells_within_a_few_percent():
    counts = {c: param_count(make_train(compose([f"cell={c}", "model.param_budget=20000"])))
              for c in ["lstm", "peephole", "gru", "rnn"]}
    assert all(abs(n - 20_000) / 20_000 < 0.03 for n in counts.values()), counts


def test_param_budget_rejects_conflicts_and_tiny_budgets():
    with pytest.raises(ValueError, match="not both"):
        make_train(compose(["model.param_budget=5000", "model.hidden_sizes=[8]"]))
    with pytest.raises(ValueError, match="param_budget=10 is below the smallest model"):
        make_train(compose(["model.param_budget=10"]))


def test_publish_skips_cleanly_offline(sweep, tmp_path, monkeypatch):
    written = report.make_report(sweep, tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert report.publish(written) == "W&B report skipped: WANDB_MODE=offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: never logged in
    assert report.publish(written).startswith("W&B report skipped: not logged in")


# ---- forecast runs: a table per data set, baselines beside the cells, forecast vs truth -------
FORECAST_TINY = ["task=forecast", "task.dataset=sine", "task.lookback=8", "cell.hidden_size=4",
                 "train.steps=4", "train.log_every=2", "train.num_seeds=2", "train.batch_size=8",
                 "train.eval_batch_size=8", "gradients.enabled=false", "logger.progress=false",
                 "logger.wandb.mode=disabled", "logger.plots=false"]


@pytest.fixture(scope="module")
def forecast_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("forecast_sweep")
    for i, cell in enumerate(["lstm", "gru"]):
        execute(compose([f"cell={cell}", *FORECAST_TINY]), root / f"{i}_forecast_{cell}")
    return root


def _sine_by_hand():
    # rnnlab's "sine" data set, written out again: sin(2 pi t / 20) + 0.1 N(0, 1), seed 0
    t = np.arange(400, dtype=np.float64)
    return np.sin(2 * np.pi * t / 20) + 0.1 * np.random.default_rng(0).standard_normal(400)


def test_forecast_report_has_a_table_per_data_set_with_baselines(forecast_sweep, tmp_path):
    written = report.make_report(forecast_sweep, tmp_path)
    df = pd.read_csv(written["results"])
    md = written["report"].read_text()
    y = _sine_by_hand()
    # test span: the last round(0.2 * 400) = 80 rows; training span: the first 280
    actual, last = y[320:], y[319:399]
    naive_rmse = np.sqrt(np.mean((actual - last) ** 2))
    naive_mase = np.mean(np.abs(actual - last)) / np.mean(np.abs(y[20:280] - y[:260]))
    assert df["test_baseline_naive_rmse"].to_numpy() == pytest.approx([naive_rmse] * 2)
    assert df["test_baseline_naive_mase"].to_numpy() == pytest.approx([naive_mase] * 2)
    assert "## forecast: sine" in md and "## forecast\n" not in md
    # the validation windows (rows 280..319, after the 280 training rows), naive by hand: the
    # column sweeps rank by, beside each run's own
    val_naive_mase = (np.mean(np.abs(y[280:320] - y[279:319]))
                      / np.mean(np.abs(y[20:280] - y[:260])))
    assert f"| baseline: naive | | | | | {val_naive_mase:.4g} | {naive_rmse:.4g} |" in md
    for _, row in df.iterrows():
        summary = json.loads((Path(row["run"]) / "summary.json").read_text())
        series = summary["forecast"]["series"]
        np.testing.assert_allclose(np.asarray(series["actual"])[:, 0], actual, rtol=1e-12)
        rmse_S = [np.sqrt(np.mean((np.asarray(p) - np.asarray(series["actual"])) ** 2))
                  for p in series["per_seed"]]
        assert row["test_rmse_mean"] == pytest.approx(np.mean(rmse_S), rel=1e-5)
        assert row["test_rmse_std"] == pytest.approx(np.std(rmse_S), rel=1e-4, abs=1e-7)
        line = next(line for line in md.splitlines() if line.startswith(f"| {row['cell']} |"))
        assert f"{row['test_rmse_mean']:.4g} ± {row['test_rmse_std']:.2g}" in line
        assert (f"| {int(row['param_count']):,} | 2 | 4 | "
                f"{row['val_mase_mean']:.4g} ± {row['val_mase_std']:.2g} | ") in line
    png = written["forecast_sine"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![sine: best run vs truth and naive on the test span](forecast_sine.png)" in md


def test_beyond_spread_names_the_better_side_where_the_skill_is_undefined(forecast_sweep,
                                                                          tmp_path):
    """A best baseline with zero error has no skill score (1 - network/0); the network is
    worse beyond its spread, and the verdict says so instead of a bare 'yes'."""
    import shutil

    run = tmp_path / "0_forecast_lstm"
    shutil.copytree(forecast_sweep / "0_forecast_lstm", run)
    summary = json.loads((run / "summary.json").read_text())
    summary["forecast"]["comparison"].update(
        skill=None, difference_mean=2.0, difference_std=0.5, beyond_spread=True)
    (run / "summary.json").write_text(json.dumps(summary))
    md = report.make_report(run, tmp_path / "out")["report"].read_text()
    line = next(line for line in md.splitlines() if line.startswith("| lstm |"))
    assert line.endswith("| — | yes, network worse |")
    summary["forecast"]["comparison"].update(difference_mean=-2.0)
    (run / "summary.json").write_text(json.dumps(summary))
    md = report.make_report(run, tmp_path / "out2")["report"].read_text()
    assert next(line for line in md.splitlines()
                if line.startswith("| lstm |")).endswith("| — | yes, network better |")


def test_forecast_report_on_one_run_writes_into_its_folder(forecast_sweep):
    run = forecast_sweep / "1_forecast_gru"
    written = report.make_report(run)
    assert written["forecast_sine"] == run / "forecast_sine.png"
    assert written["forecast_sine"].stat().st_size > 0
    assert "| gru |" in (run / "report.md").read_text()


def test_forecast_figure_and_series_record_check_their_inputs(forecast_sweep, tmp_path):
    from rnnlab.forecast import plots

    series = json.loads((forecast_sweep / "0_forecast_lstm" / "summary.json").read_text())[
        "forecast"]["series"]
    with pytest.raises(ValueError, match="step must be in"):
        plots.forecast_figure(series, tmp_path / "x.png", title="t", step=2)
    with pytest.raises(ValueError, match="every seed diverged"):
        plots.forecast_figure({**series, "per_seed": [None, None]}, tmp_path / "x.png",
                              title="t")
    data = make_train(compose(FORECAST_TINY)).task.data
    with pytest.raises(ValueError, match=r"\[S, N, H\] with \[N, H\] = \(80, 1\); got"):
        plots.series_record(data, np.zeros((2, 79, 1)), [True, True])


def test_task_tables_split_by_options_that_differ():
    df = pd.DataFrame({"task": ["timed_spikes"] * 3 + ["copy"],
                       "task.mode": ["msd", "gts", "gts", None],
                       "task.length": [60, 60, 80, 5]})
    titles = {title: len(rows) for title, rows in report._task_variants(df)}
    # length alone never splits a table (it is the T column); other options do
    assert titles == {"copy": 1, "timed_spikes (mode=gts)": 2, "timed_spikes (mode=msd)": 1}
    # a whole-number option that pandas made a float (a column with a missing value): no .0
    df = pd.DataFrame({"task": ["copy"] * 3, "task.copy_length": [3.0, 3.0, np.nan],
                       "task.length": [5, 5, 5], "task.noise": [0.5, 0.5, 0.25]})
    titles = sorted(title for title, _ in report._task_variants(df))
    assert titles == ["copy (copy_length=3, noise=0.5)", "copy (copy_length=nan, noise=0.25)"]


def test_figure_lines_keep_the_variants_of_one_cell_apart(tmp_path):
    """Two LSTM variants over two lengths: the metric-vs-length figure draws one line per
    variant (two points each), not one line for the cell that zig-zags between them."""
    import matplotlib

    matplotlib.use("Agg")
    rows = [{"task": "adding", "status": "ok", "cell": "lstm", "T": T, "sweep": "s",
             "overrides": f"cell=lstm cell.variant={v} task.length={T}",
             "mse_mean": m, "mse_std": 0.01}
            for v, ms in (("vanilla", (0.01, 0.02)), ("cifg", (0.05, 0.09)))
            for T, m in zip((10, 30), ms, strict=True)]
    df = pd.DataFrame(rows)
    labels = report.line_labels(df)
    assert sorted(set(labels)) == ["lstm (cell.variant=cifg)", "lstm (cell.variant=vanilla)"]
    drawn = {}
    original = report.plt.Axes.errorbar

    def spy(ax, x, y, *args, label=None, **kwargs):
        drawn[label] = list(y)
        return original(ax, x, y, *args, label=label, **kwargs)

    report.plt.Axes.errorbar = spy
    try:
        assert report.metric_vs_length_figure(df, "adding", tmp_path / "f.png", "mse")
    finally:
        report.plt.Axes.errorbar = original
    assert drawn == {"lstm (cell.variant=cifg)": [0.05, 0.09],
                     "lstm (cell.variant=vanilla)": [0.01, 0.02]}


def test_forecast_row_labels_write_whole_numbers_without_a_decimal_point():
    """pandas turns an int column with gaps (runs that did not set it) into floats; the label
    of a row says steps=200, as the command line did, not steps=200.0."""
    row = pd.Series({"cell": "lstm", "train.steps": 200.0, "task.scaler": "minmax",
                     "optim.learning_rate": 0.003})
    assert report._variant_label(row, ["train.steps", "task.scaler", "optim.learning_rate"]) == (
        "lstm steps=200 scaler=minmax learning_rate=0.003")
