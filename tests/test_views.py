"""How results read: the end-of-run summary, the run title, the run folder's figures (sizes,
panel grid, titles that fit, zeros on log axes, diverged runs), summary.json's JSON, the report
rows of several sweeps, and the docs and presets that must work on any machine."""

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rnnlab import loop, plots, report
from rnnlab.config import compose
from rnnlab.train import make_train

ROOT = Path(__file__).resolve().parents[1]


# ---- the end-of-run summary -------------------------------------------------------------------
def _summary(**extra):
    base = {"title": "t", "final": {"loss": {"mean": 0.5, "std": 0.1}},
            "baselines": {"loss": 0.8}, "per_seed": {
                "0": {"loss": 0.4, "solved": False, "diverged": False},
                "1": {"loss": 0.6, "solved": True, "diverged": False}},
            "seeds_solved": 1, "steps": 4000, "steps_run": 2590, "stopped_early": True,
            "early_stopping_patience": 5, "best_step": [666, 2220]}
    return {**base, **extra}


def test_summary_line_says_when_and_where_a_run_stopped_early():
    text = loop.summary_line(_summary())
    assert ("stopped early at step 2,590 of 4,000: no validation improvement for 5 "
            "evaluations; best validation loss (weights kept) at step 666, 2,220 (per seed)"
            in text)
    assert "seeds that solved the task: 1 of 2" in text
    assert "loss 0.5 ± 0.1 (baseline 0.8)" in text
    plain = loop.summary_line(_summary(stopped_early=False, best_step=None, steps_run=4000))
    assert "stopped early" not in plain and "early stopping" not in plain


def test_summary_line_shows_the_forecast_test_span_in_units_beside_baselines():
    per_seed = [{"rmse": 1.0, "mae": 0.5, "mase": 2.0, "smape": 10.0},
                {"rmse": 3.0, "mae": 1.5, "mase": 4.0, "smape": 30.0}, None]
    forecast = {"windows": 80, "per_seed": per_seed, "series": {"target": "Close"},
                "baselines": {"naive": {"rmse": 1.25, "mae": 0.75, "mase": 1.0, "smape": 5.5},
                              "ar(3)": {"rmse": 0.875, "mae": 0.5, "mase": 0.7, "smape": 4.0}}}
    lines = loop.summary_line(_summary(forecast=forecast, seeds_solved=None)).splitlines()
    table = [line for line in lines
             if line.startswith(("[rnnlab] model (", "[rnnlab] baseline "))]
    # the live seeds' mean ± population std, by hand: rmse (1+3)/2 = 2 ± 1, mae 1 ± 0.5
    assert table[0].split()[1:] == ["model", "(2", "seeds)", "2", "±", "1", "1", "±", "0.5",
                                    "3", "±", "1", "20", "±", "10"]
    assert table[1].split()[1:] == ["baseline", "naive", "1.25", "0.75", "1", "5.5"]
    assert table[2].split()[1:] == ["baseline", "ar(3)", "0.875", "0.5", "0.7", "4"]
    assert any("test span: 80 windows of Close" in line for line in lines)
    assert any("validation (loss, mae in the model's scaled units; val_* in the series' "
               "units): loss 0.5" in line for line in lines)
    assert not any("solved" in line for line in lines)  # a forecast has no criterion


def test_the_forecast_table_counts_seeds_and_folds_apart():
    """per_seed pools folds x seeds: 2 folds of 3 seeds are '3 seeds x 2 folds', not 6 seeds."""
    m = {"rmse": 1.0, "mae": 0.5, "mase": 2.0, "smape": 10.0}
    forecast = {"windows": 8, "folds": 2, "per_seed": [m] * 6, "series": {"target": "v"},
                "baselines": {}}
    lines = loop.summary_line(_summary(forecast=forecast, seeds_solved=None)).splitlines()
    assert any(line.startswith("[rnnlab] model (3 seeds x 2 folds)") for line in lines)
    one = loop.summary_line(_summary(forecast={**forecast, "folds": 1}, seeds_solved=None))
    assert "[rnnlab] model (6 seeds)" in one


def test_the_title_names_the_whole_stack():
    trainer = make_train(compose(["model.num_layers=2", "model.bidirectional=true",
                                  "model.merge=sum", "model.dropout=0.2",
                                  "model.projection=hoisted", "model.head_sizes=[16]",
                                  "cell.hidden_size=8"]))
    assert loop.model_label(trainer.model, "lstm") == (
        "lstm widths=[8, 8] bidirectional (sum) · dropout 0.2 · head [16] · projection hoisted")
    plain = make_train(compose(["cell.hidden_size=8", "model.projection=in_scan"]))
    assert loop.model_label(plain.model, "gru") == "gru widths=[8] · projection in_scan"


# ---- summary.json is JSON: no "inf" strings ---------------------------------------------------
def test_half_lives_are_json_valid_with_a_decay_flag():
    out = loop._gradients_json({"init/layer_0/h/half_life": math.inf,
                           "init/layer_0/c/half_life": 3.5,
                           "final/layer_0/h/half_life": math.nan,
                           "init/layer_0/h/first_last_ratio": 2.0})
    assert out == {"init/layer_0/h/half_life": None, "init/layer_0/h/decays": False,
                   "init/layer_0/c/half_life": 3.5, "init/layer_0/c/decays": True,
                   "final/layer_0/h/half_life": None, "final/layer_0/h/decays": None,
                   "init/layer_0/h/first_last_ratio": 2.0}
    json.dumps(out, allow_nan=False)  # strict JSON


def _write_run(folder: Path, summary: dict, config: dict | None = None,
               overrides: list[str] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(yaml.safe_dump(config or {}))
    if overrides is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return folder


def _ok_summary(cell, T, loss, seeds=(0, 1, 2), **extra):
    return {"status": "ok", "cell": cell, "task": "adding", "sequence_length": T,
            "param_count": 100, "hidden_sizes": [8], "seeds": list(seeds),
            "final": {"loss": {"mean": loss, "std": 0.01},
                      "solved_fraction": {"mean": 0.5, "std": 0.1}},
            "baselines": {"loss": 1 / 6, "solved_fraction": 0.0784}, "seeds_solved": 1,
            **extra}


def test_report_reads_a_non_decaying_half_life_as_infinite(tmp_path):
    grads = {"init/layer_0/h/half_life": None, "init/layer_0/h/decays": False,
             "final/layer_0/h/half_life": 4.0, "final/layer_0/h/decays": True}
    run = _write_run(tmp_path / "r", _ok_summary("gru", 5, 0.1, gradients=grads),
                     {"task": {"name": "adding", "length": 5}})
    df = report.results_table([run])
    assert df.loc[0, "grad_init/layer_0/h/half_life"] == math.inf
    assert df.loc[0, "grad_final/layer_0/h/half_life"] == 4.0
    assert not any(c.endswith("/decays") for c in df.columns)
    assert "| gru | 5 | no decay | 4 |" in report.markdown(df)


def test_no_two_result_columns_can_be_confused(tmp_path):
    run = _write_run(tmp_path / "r", _ok_summary("gru", 5, 0.1),
                     {"task": {"name": "adding", "length": 5}})
    df = report.results_table([run])
    # the adding task's own metric keeps its name; the share of seeds is a count of seeds
    assert "solved_fraction_mean" in df and "seeds_solved" in df and "num_seeds" in df
    assert "solved_fraction" not in df
    stems = [c for c in df.columns if c.startswith("solved")]
    assert all(c.startswith("solved_fraction_") for c in stems)
    assert "| 1/3 |" in report.markdown(df)


def test_report_rows_from_several_sweeps_say_what_differs(tmp_path):
    cfg = {"task": {"name": "adding", "length": 5}}
    _write_run(tmp_path / "2026-11-26" / "10-00-00" / "0_adding_gru",
               _ok_summary("gru", 5, 0.10), cfg, ["cell=gru", "optim.learning_rate=0.01",
                                                  "logger.progress=false"])
    _write_run(tmp_path / "2026-11-27" / "09-00-00" / "0_adding_gru",
               _ok_summary("gru", 5, 0.20, seeds=range(5)), cfg,
               ["cell=gru", "optim.learning_rate=0.001", "logger.progress=false"])
    written = report.make_report(tmp_path, tmp_path / "out")
    df = pd.read_csv(written["results"])
    assert sorted(df["sweep"]) == ["2026-11-26/10-00-00", "2026-11-27/09-00-00"]
    md = written["report"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| gru |")][:2]
    assert rows[0].startswith("| gru | 5 | 2026-11-26/10-00-00 | optim.learning_rate=0.01 | 3 |")
    assert rows[1].startswith("| gru | 5 | 2026-11-27/09-00-00 | optim.learning_rate=0.001 | 5 |")
    assert "logger.progress" not in md  # logging options change no result
    header = next(line for line in md.splitlines() if line.startswith("| cell | T |"))
    assert "| sweep | settings | seeds |" in header


# ---- figures ----------------------------------------------------------------------------------
def _grads(names, M=3, S=2, T=12, zero_last_c=True):
    rng = np.random.default_rng(0)
    out = {"steps": np.arange(M) * 100, "seeds": np.arange(S)}
    for name in names:
        mean = np.exp(-0.2 * np.arange(T))[::-1] * (1 + rng.random((M, S, T)))
        if zero_last_c and name.endswith("/c"):
            mean[..., -1] = 0.0  # dL/dc_{T-1} = 0: the last cell state is never read
        out[f"{name}/mean"] = mean
        out[f"{name}/std"] = 0.1 * mean
    return out


def _titles_fit(fig):
    """Every visible title and the suptitle lie inside the figure, by the rendered extents."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    texts = [fig._suptitle] + [ax.title for ax in fig.axes if ax.get_visible()]
    out = []
    for t in texts:
        if t is None or not t.get_text():
            continue
        e = t.get_window_extent(renderer)
        out.append((t.get_text(), e.x0 >= box.x0 - 0.5 and e.x1 <= box.x1 + 0.5
                    and e.y1 <= box.y1 + 0.5))
    return out


BIDIR_2 = [f"layer_{i}{d}/{f}" for i in range(2) for d in ("", "_reverse") for f in "hc"]
LONG = ("copy(length=200, copy_length=10, num_symbols=8) · lstm widths=[128, 128] "
        "bidirectional (concat) · dropout 0.2 · projection in_scan · 538,889 params")


def test_gradient_curves_lay_out_layers_by_direction_and_field():
    fig = plots.gradient_curves_figure(_grads(BIDIR_2), LONG)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 8
    # rows are layers, columns forward h, forward c, reverse h, reverse c
    grid = [[ax.get_title() for ax in fig.axes[r * 4:(r + 1) * 4]] for r in range(2)]
    assert grid == [[f"layer_{i} {d}: ||dL/d{f}_t||" for d in ("forward", "reverse")
                     for f in "hc"] for i in range(2)]
    w, h = fig.get_size_inches() * fig.dpi
    assert w <= 1800 and 0.3 <= h / w <= 0.7, (w, h)  # readable whole: not one long strip
    assert all(ok for _, ok in _titles_fit(fig)), _titles_fit(fig)


def test_log_axes_mark_exact_zeros_instead_of_dropping_them():
    fig = plots.gradient_curves_figure(_grads(["layer_0/h", "layer_0/c"], M=3), "t")
    ax_c = next(ax for ax in fig.axes if ax.get_title().endswith("dc_t||"))
    marks = [line for line in ax_c.get_lines() if line.get_marker() == "x"]
    # one x per measurement at t = T - 1 = 11, on the bottom edge (axes y = 0)
    assert len(marks) == 3
    assert all(list(m.get_xdata()) == [11] and list(m.get_ydata()) == [0.0] for m in marks)
    ax_h = next(ax for ax in fig.axes if ax.get_title().endswith("dh_t||"))
    assert not [line for line in ax_h.get_lines() if line.get_marker() == "x"]
    assert "exactly 0 (bottom edge)" in [t.get_text() for t in fig.axes[0].get_legend().texts]


def test_heatmap_shows_h_and_c_and_a_title_that_fits_one_panel():
    fig = plots.gradient_heatmap_figure(_grads(["layer_0/h", "layer_0/c"]), LONG)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["layer_0 forward: ||dL/dh_t||", "layer_0 forward: ||dL/dc_t||"]
    assert all(ok for _, ok in _titles_fit(fig)), _titles_fit(fig)
    image = fig.axes[1].get_images()[0].get_array()
    assert image.mask[:, -1].all() and not image.mask[:, :-1].any()  # zeros: grey, not -30


def test_every_title_fits_for_one_to_three_layers():
    for names in (["layer_0/h"], ["layer_0/h", "layer_0/c"], BIDIR_2,
                  [f"layer_{i}/h" for i in range(3)]):
        for make in (plots.gradient_curves_figure, plots.gradient_heatmap_figure):
            fig = make(_grads(names), LONG)
            assert all(ok for _, ok in _titles_fit(fig)), (names, make, _titles_fit(fig))


def _diverged_run(tmp_path) -> Path:
    run = tmp_path / "2_adding_rnn"
    run.mkdir()
    records = []
    for step in (0, 100, 200):
        for seed in (0, 1):
            bad = (step >= 100 and seed == 0) or step >= 200
            records.append({"step": step, "seed": seed, "split": "eval",
                            "loss": None if bad else 0.2 + 0.1 * seed,
                            "mse": None if bad else 0.2 + 0.1 * seed})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (run / "events.jsonl").write_text(
        json.dumps({"event": "diverged", "seed": 0, "step": 100}) + "\n"
        + json.dumps({"event": "diverged", "seed": 1, "step": 200}) + "\n")
    (run / "summary.json").write_text(json.dumps({
        "status": "failed", "title": run.name,
        "error": "FloatingPointError: training diverged: non-finite loss at step 200"}))
    (run / "config.yaml").write_text(yaml.safe_dump({"task": {"name": "adding", "length": 10},
                                                     "cell": {"name": "rnn",
                                                              "hidden_size": 128}}))
    return run


def test_a_diverged_run_shows_its_curve_up_to_the_divergence(tmp_path):
    run = _diverged_run(tmp_path)
    title = plots.run_title(run, json.loads((run / "summary.json").read_text()))
    assert title.startswith("adding(length=10) · rnn hidden_size=128 · FAILED: FloatingPoint")
    fig = plots.learning_curve_figure(plots.read_metrics(run), {}, title,
                                      plots.read_events(run))
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if line.get_label().startswith("seed ")
              and "diverged" not in line.get_label()]
    # seed 0 has one finite point (step 0), seed 1 two: drawn with markers, so visible
    finite = [np.isfinite(np.asarray(c.get_ydata(), float)).sum() for c in curves]
    assert finite == [1, 2] and all(c.get_marker() == "o" for c in curves)
    marks = {line.get_label(): line.get_xdata()[0] for line in ax.get_lines()
             if "diverged" in line.get_label()}
    assert marks == {"seed 0 diverged (step 100)": 100, "seed 1 diverged (step 200)": 200}
    assert all(ok for _, ok in _titles_fit(fig))
    plots.run_plots(run)
    assert (run / "learning_curve.png").stat().st_size > 0


# ---- docs and presets that work on any machine ------------------------------------------------
def test_docs_and_presets_refer_only_to_files_a_user_has():
    docs = [ROOT / "README.md", *ROOT.glob("experiments/*/README.md"),
            *ROOT.glob("experiments/*/config.yaml"), *ROOT.glob("docs/*.md")]
    offenders = [str(p.relative_to(ROOT)) for p in docs if "/work/" in p.read_text()]
    assert not offenders
    for preset in ROOT.glob("experiments/*/config.yaml"):
        path = (yaml.safe_load(preset.read_text()).get("task") or {}).get("path")
        assert path is None or path.startswith("${rnnlab_data:"), (preset, path)


def test_the_multivariate_preset_runs_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose(["+experiment=seed_toy_multivariate"])
    path = Path(cfg.task.path)
    assert path.is_absolute() and path.parent.name == "data" and path.name == "pairs.csv"
    data = make_train(cfg).task.data
    # np.arange(20).reshape(-1, 2): column b is 1, 3, ..., 19
    np.testing.assert_array_equal(np.asarray(data.target_levels), np.arange(1, 20, 2))
    bad = compose(["+experiment=seed_toy_multivariate", "task.path=${rnnlab_data:nope.csv}"])
    with pytest.raises(Exception, match=r"rnnlab_data:nope\.csv: no such file"):
        str(bad.task.path)


def test_adding_docstring_ratio_is_right():
    from rnnlab.tasks import adding

    ratio = math.sqrt(adding.SOLVED_MSE) / math.sqrt(1 / 6)  # RMS 0.1 against 0.408
    assert 0.2 < ratio < 0.3
    assert "about a quarter of the baseline" in " ".join(adding.__doc__.split())
    assert "a tenth" not in adding.__doc__


def test_report_html_is_one_self_contained_page(tmp_path):
    for i, (cell, T) in enumerate([("gru", 5), ("lstm", 10)]):
        cfg = {"task": {"name": "adding", "length": T}}
        summary = _ok_summary(cell, T, 0.1 * (i + 1))
        summary["final"]["mse"] = summary["final"]["loss"]
        run = _write_run(tmp_path / "sweep" / f"{i}_adding_{cell}", summary, cfg)
        np.savez(run / "gradients.npz", **_grads(["layer_0/h", "layer_0/c"]))
    written = report.make_report(tmp_path / "sweep", tmp_path / "out", html=True)
    page = written["html"].read_text()
    md = written["report"].read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert figures == ["gradient_flow_adding.png", "metric_vs_length_adding.png"]
    sources = re.findall(r"<img[^>]* src='([^']+)'", page)
    assert len(sources) == 2
    for src, name in zip(sources, figures, strict=True):
        assert base64.b64decode(src.split(",", 1)[1]) == (tmp_path / "out" / name).read_bytes()
    assert not re.search(r"(src|href)=['\"](https?:|//)", page)
    assert "default-src 'none'" in page and "<table class='sortable'>" in page
    assert "<td data-sort='100.0'>100</td>" in page  # params sort as numbers


def test_forecast_rows_from_two_sweeps_name_their_sweep(tmp_path):
    cfg = {"task": {"name": "forecast", "dataset": "sine", "horizon": 1}}
    for sweep, rmse in (("a", 1.0), ("b", 2.0)):
        metrics = {"rmse": rmse, "mae": rmse / 2, "mase": rmse, "smape": 10 * rmse}
        summary = {**_ok_summary("gru", 400, 0.1), "task": "forecast", "steps_run": 4,
                   "forecast": {"windows": 80, "per_seed": [metrics],
                                "baselines": {"naive": {"rmse": 1.5, "mae": 0.7,
                                                        "mase": 1.1, "smape": 9.0}}}}
        _write_run(tmp_path / sweep / "0_forecast_gru", summary, cfg)
    md = report.make_report(tmp_path, tmp_path / "out")["report"].read_text()
    lines = md.splitlines()
    assert "| model | sweep | widths | params | seeds |" in "\n".join(lines)
    assert any(line.startswith("| gru | a | 8 | 100 | 3 |") for line in lines)
    assert any(line.startswith("| gru | b | 8 | 100 | 3 |") for line in lines)
    assert "| baseline: naive | | | | | | 1.5 |" in md
