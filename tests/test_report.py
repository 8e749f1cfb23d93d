"""The report command on a small sweep, and the matched parameter budget."""

import json

import numpy as np
import pandas as pd
import pytest

from rnnlab import report
from rnnlab.config import compose
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
    with pytest.raises(ValueError):
        execute(compose(["cell=gru", *TINY, "task.length=0"]), bad)
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


def test_report_cli_errors_on_an_empty_folder(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


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
