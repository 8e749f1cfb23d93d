"""End-to-end: the Hydra entry point, run folders, sweeps with a failing job, config errors,
and the configs shipped inside the wheel."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from rnnlab.config import compose
from rnnlab.loop import execute

ROOT = Path(__file__).resolve().parents[1]
TINY = ["cell.hidden_size=8", "task.length=2", "task.copy_length=3", "train.steps=4",
        "train.log_every=2", "train.num_seeds=2", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
        "logger.progress=false"]


def _run(args, cwd, check=True):
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"rnnlab.run failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_single_run_writes_the_run_folder(tmp_path):
    proc = _run(["cell=peephole", *TINY, "logger.wandb.mode=offline",
                 f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    run = tmp_path / "run"
    assert "[rnnlab] copy(length=2" in proc.stdout and "baseline" in proc.stdout
    assert "[rnnlab] run folder: run\n" in proc.stdout  # relative to the working folder
    for name in ("config.yaml", "metrics.jsonl", "gradients.npz", "summary.json",
                 "learning_curve.png", "gradients.png", "gradients_heatmap.png"):
        assert (run / name).exists(), f"{name} missing from the run folder"
    records = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert records, "no offline W&B run was written"
    logged = records[0].read_bytes()
    for key in (b"eval/loss/seed_0", b"eval/accuracy/seed_1", b"train/grad_norm_clipped",
                b"gradients/layer_0/h/norm_vs_t", b"gradients/heatmap"):
        assert key in logged, f"{key!r} missing from the offline W&B run"

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["cell"] == "peephole"
    # baseline of the copy task: copy_length ln(num_symbols) / (delay + 2 copy_length)
    assert summary["baselines"]["loss"] == pytest.approx(3 * np.log(8) / (2 + 6))
    # param count: peephole H=8 on 10 one-hot inputs, plus the dense output (8 -> 9 classes)
    assert summary["param_count"] == 4 * (8 * 10 + 64 + 8) + 3 * 8 + 8 * 9 + 9

    df = pd.read_json(run / "metrics.jsonl", lines=True)
    ev = df[df.split == "eval"]
    assert sorted(ev.step.unique()) == [0, 2, 4] and sorted(ev.seed.unique()) == [0, 1]
    last = ev[ev.step == 4].set_index("seed")
    assert last.loc[0, "loss"] == pytest.approx(summary["per_seed"]["0"]["loss"], rel=1e-6)
    assert np.isfinite(df[df.split == "train"]["grad_norm"]).all()

    with np.load(run / "gradients.npz") as g:
        assert list(g["steps"]) == [0, 2, 4]
        assert g["layer_0/h/mean"].shape == (3, 2, 2 + 6)  # measurements x seeds x T
        assert g["layer_0/c/mean"].shape == (3, 2, 2 + 6)


def test_sweep_survives_failing_jobs_and_exits_nonzero(tmp_path):
    """A job with a bad value and a job that diverges: every job runs, the sweep lists the
    failed ones (stderr, sweep.csv, sweep.md) and the command exits with status 1."""
    tiny = [o for o in TINY if not o.startswith("task.length=")]
    proc = _run(["-m", "cell=rnn", "task.length=2,0", "optim=sgd", "optim.grad_clip=null",
                 "optim.learning_rate=1e-2,1e38", *tiny, "logger.wandb.mode=disabled",
                 "logger.plots=false", f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path,
                check=False)
    assert proc.returncode == 1, proc.stderr
    sweep = tmp_path / "sweep"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 4, (jobs, proc.stdout, proc.stderr)
    table = pd.read_csv(sweep / "sweep.csv").set_index("job")
    status = {j.name: json.loads((j / "summary.json").read_text())["status"] for j in jobs}
    assert sorted(status.values()) == ["failed", "failed", "failed", "ok"]
    # the job numbers follow Hydra's order: cartesian product of task.length x learning_rate
    assert table.loc["0_copy_rnn", "status"] == "ok"
    assert table.loc["1_copy_rnn", "status"] == "diverged"
    assert set(table.loc[["2_copy_rnn", "3_copy_rnn"], "status"]) == {"failed"}
    assert "length must be an int >= 1; got 0" in table.loc["2_copy_rnn", "error"]
    ok = json.loads((jobs[0] / "summary.json").read_text())
    assert table.loc["0_copy_rnn", "metric"] == "accuracy"
    assert table.loc["1_copy_rnn", "metric"] == "accuracy"  # a job failed in training too
    assert table.loc["2_copy_rnn", "metric"] == "accuracy"  # and one refused before it ran
    assert table.loc["0_copy_rnn", "mean"] == pytest.approx(ok["final"]["accuracy"]["mean"])
    md = (sweep / "sweep.md").read_text()
    assert "4 jobs" in md and "## Jobs not ok" in md and "3_copy_rnn" in md
    failed_lines = [line for line in proc.stderr.splitlines() if line.startswith("[rnnlab]   ")]
    assert len(failed_lines) == 3 and all(" FAILED: " in line or " DIVERGED: " in line
                                          for line in failed_lines)


def test_diverged_training_keeps_what_was_logged(tmp_path):
    cfg = compose(["cell=rnn", *TINY, "train.steps=6", "optim=sgd", "optim.momentum=0.0",
                   "optim.learning_rate=1e38", "optim.grad_clip=null",
                   "logger.wandb.mode=disabled", "logger.plots=false"])
    with pytest.raises(FloatingPointError,
                       match=r"diverged for every seed by step 2 \(non-finite loss"):
        execute(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "diverged" in summary["error"]
    df = pd.read_json(tmp_path / "metrics.jsonl", lines=True)
    assert set(df.step) == {0, 2}  # the initial evaluation and the diverged chunk
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["diverged", "diverged", "failed"]
    assert events[0]["rule"] == "non-finite loss"
    assert "Traceback" in events[-1]["traceback"]


def test_exploding_finite_loss_is_divergence(tmp_path):
    """A loss that explodes to finite values far above its start is divergence too; the
    summary names the rule and the step. Reference: the logged losses themselves."""
    cfg = compose(["cell=rnn", *TINY, "train.steps=8", "optim=sgd", "optim.momentum=0.0",
                   "optim.learning_rate=30", "optim.grad_clip=null", "cell.hidden_size=4",
                   "train.divergence_factor=2", "logger.wandb.mode=disabled",
                   "logger.plots=false"])
    try:
        summary = execute(cfg, tmp_path)
    except FloatingPointError:
        summary = json.loads((tmp_path / "summary.json").read_text())
    df = pd.read_json(tmp_path / "metrics.jsonl", lines=True)
    initial = df[(df.split == "eval") & (df.step == 0)].set_index("seed")["loss"]
    train = df[df.split == "train"].sort_values("step")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    diverged = {e["seed"]: e for e in events if e["event"] == "diverged"}
    assert diverged, "the loss did not explode: raise optim.learning_rate in this test"
    for seed, event in diverged.items():
        rows = train[train.seed == seed]
        first = rows[~(rows.loss <= 2 * initial[seed])].iloc[0]  # first chunk over the rule
        assert event["step"] == first.step
        assert event["rule"].startswith("loss above 2 x initial")
        if "divergence" in summary:
            assert summary["divergence"][str(seed)]["step"] == first.step


def test_unknown_cell_lists_the_registered_ones():
    with pytest.raises(MissingConfigException) as err:
        compose(["cell=lstn"])
    for name in ("lstm", "peephole", "gru", "rnn"):
        assert f"\t{name}" in str(err.value)


@pytest.mark.parametrize("override, fragment", [
    ("cell.hidden_size=abc", "hidden_size"),
    ("train.steps=1.5", "steps"),
    ("cell.hidden_sise=64", "hidden_sise"),
    ("model.dropout=high", "dropout"),
])
def test_typos_and_wrong_types_fail_at_compose_time(override, fragment):
    with pytest.raises(ConfigCompositionException) as err:
        compose([override])
    text = str(err.value) + str(err.value.__cause__)
    assert fragment in text


def test_appended_unknown_option_fails_when_the_run_is_built():
    # "+key=value" appends past the schema; the cell registry still rejects it by name
    from rnnlab.train import make_train

    cfg = compose(["+cell.hidden_sise=64"])
    with pytest.raises(TypeError, match=r"cell 'lstm' has no option\(s\) \['hidden_sise'\]"):
        make_train(cfg)


def test_packaged_configs_load_from_the_built_wheel(tmp_path):
    """Build the wheel, unpack it away from the repo, compose a config from inside it."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("rnnlab-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "rnnlab" / "conf" / "config.yaml").exists()
    assert (site / "rnnlab" / "conf" / "cell" / "peephole.yaml").exists()
    code = ("import rnnlab.config as c; p = c.config_dir(); "
            "cfg = c.compose(['cell=peephole']); print(p); print(cfg.cell.name); "
            "pre = c.compose(['+experiment=seed_toy_multivariate']); print(pre.task.path)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(site)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    path, name, csv = proc.stdout.split()
    assert Path(path) == site / "rnnlab" / "conf" and name == "peephole"
    # a preset's data ships inside the package, and the preset finds it there
    assert Path(csv) == site / "rnnlab" / "data" / "pairs.csv" and Path(csv).is_file()


def test_runs_started_together_get_their_own_folders(tmp_path):
    """Two real processes with different settings started at the same moment: two folders,
    each holding its own config, summary and metrics only."""
    env = {**os.environ, "WANDB_SILENT": "true"}
    tiny = [o for o in TINY if not o.startswith("task.length=")]
    procs = [subprocess.Popen([sys.executable, "-m", "rnnlab.run", f"task.length={n}", *tiny,
                               "logger.wandb.mode=disabled", "logger.plots=false",
                               "gradients.enabled=false"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (5, 7)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    runs = sorted((tmp_path / "outputs").glob("*/*_copy_lstm"))
    assert len(runs) == 2, runs
    lengths = set()
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        length = summary["sequence_length"] - 2 * 3  # T + 2 copy_length
        lengths.add(length)
        df = pd.read_json(run / "metrics.jsonl", lines=True)
        # 2 seeds x (initial eval + 2 chunks x (train, eval)) rows, nothing from the other run
        assert len(df) == 2 * (1 + 2 * 2)
        assert f"length: {length}" in (run / "config.yaml").read_text()
    assert lengths == {5, 7}


def test_each_job_end_rewrites_the_sweep_tables(tmp_path):
    """A sweep that never reaches its end (a worker killed) keeps the table of the jobs done
    so far: every job's end rewrites sweep.csv/sweep.md from the job folders, the ones still
    running marked so; a single run writes no sweep table."""
    from hydra.types import RunMode

    from rnnlab.jobs import RunCallback

    done, running = tmp_path / "0_copy_rnn", tmp_path / "1_copy_rnn"
    for job, override in ((done, "cell.hidden_size=8"), (running, "cell.hidden_size=16")):
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- {override}\n")
    (done / "summary.json").write_text(json.dumps({
        "status": "ok", "seeds": [0, 1], "task": "copy",
        "main_metric": {"name": "accuracy", "maximize": True},
        "final": {"accuracy": {"mean": 0.75, "std": 0.05}}}))
    single = OmegaConf.create({"hydra": {"mode": RunMode.RUN, "sweep": {"dir": str(tmp_path)}}})
    RunCallback().on_job_end(single)
    assert not (tmp_path / "sweep.csv").exists()
    sweep = OmegaConf.create({"hydra": {"mode": RunMode.MULTIRUN,
                                        "sweep": {"dir": str(tmp_path)}}})
    RunCallback().on_job_end(sweep)
    table = pd.read_csv(tmp_path / "sweep.csv").set_index("job")
    assert table.loc["0_copy_rnn", "status"] == "ok"
    assert table.loc["0_copy_rnn", "mean"] == pytest.approx(0.75)
    assert table.loc["1_copy_rnn", "status"] == "running"
    assert "2 jobs" in (tmp_path / "sweep.md").read_text()
    assert "Best copy job by accuracy (higher is better): `0_copy_rnn`, 0.75 ± 0.05" in (
        tmp_path / "sweep.md").read_text()
    assert not list(tmp_path.glob(".sweep.*.tmp"))  # written whole, then renamed


def test_a_sweep_folder_is_continued_only_by_the_same_grid(tmp_path):
    """Jobs are numbered by their place in the grid and a rerun keeps the finished ones: a
    rerun into the same hydra.sweep.dir with another grid is refused before anything runs
    (one line, exit 2, the folder untouched); and a finished job whose config differs from
    what its number now means is never kept under the new values (FAILED, not rerun)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["WANDB_SILENT"] = "true"
    sweep = tmp_path / "sweep"

    def run(*grid):
        return subprocess.run([sys.executable, "-m", "rnnlab.run", "-m", *TINY, *grid,
                               "logger.wandb.mode=disabled", "logger.plots=false",
                               f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    assert run("optim.learning_rate=1e-3,3e-2").returncode == 0
    first = (sweep / "0_copy_lstm" / ".hydra" / "overrides.yaml").read_text()
    listing = sorted(p.name for p in sweep.iterdir())
    proc = run("optim.learning_rate=1e-4,1e-3,3e-2")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[rnnlab] error: sweep folder {sweep} "
                                                   "holds a sweep of other overrides"), lines
    assert "optim.learning_rate=1e-4,1e-3,3e-2" in lines[0]
    assert sorted(p.name for p in sweep.iterdir()) == listing
    assert (sweep / "0_copy_lstm" / ".hydra" / "overrides.yaml").read_text() == first
    # without the sweep's record (multirun.yaml), each finished job compares its own config
    (sweep / "multirun.yaml").unlink()
    proc = run("optim.learning_rate=1e-4,1e-3")
    assert proc.returncode == 1, proc.stderr
    assert "job 0 (" in proc.stderr and "optim.learning_rate: 0.001 -> 0.0001" in proc.stderr
    assert "optim.learning_rate: 0.03 -> 0.001" in proc.stderr
    assert "finished in an earlier run" not in proc.stdout + proc.stderr


@pytest.mark.slow  # two subprocess runs; the parts are unit-tested in CI
def test_a_forecast_sweep_ranks_jobs_by_validation_mase_in_units(tmp_path):
    """Jobs with other scalers train on other scales (their losses are not comparable); the
    sweep table's metric is each job's validation MASE in the series' units, from its
    summary."""
    proc = _run(["-m", "task=forecast", "task.dataset=sine", "task.lookback=8",
                 "task.scaler=minmax,standard", "cell.hidden_size=8", "train.steps=4",
                 "train.log_every=2", "train.num_seeds=1", "train.batch_size=8",
                 "gradients.every=0", "logger.progress=false",
                 f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path)
    assert "val_mase" in proc.stdout
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(table["metric"]) == ["val_mase", "val_mase"]
    best = table.loc[table["mean"].idxmin()]
    assert (f"Best forecast job by val_mase (lower is better): `{best['job']}`"
            in (tmp_path / "sweep" / "sweep.md").read_text())
    for _, row in table.iterrows():
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        final = summary["final"]
        assert row["mean"] == pytest.approx(final["val_mase"]["mean"])
        # MASE = MAE / the training span's in-sample naive MAE (the test span's scale: the
        # same training span), both in units
        assert "solved" not in summary["per_seed"]["0"] and summary["seeds_solved"] is None
        scale = summary["forecast"]["per_seed"][0]["mase_scale"]
        assert final["val_mase"]["mean"] == pytest.approx(final["val_mae"]["mean"] / scale)
    scaled = [json.loads((Path(d) / "summary.json").read_text())["final"]["loss"]["mean"]
              for d in table["run_dir"]]
    assert scaled[0] != pytest.approx(scaled[1], rel=0.2)  # the scaled losses differ in scale


@pytest.mark.slow  # two subprocess runs; the parts are unit-tested in CI
def test_a_glob_sweep_and_an_interpolated_cell_name_reach_hydra(tmp_path):
    """-m 'cell=glob(min*)' sweeps the cells whose names match (it failed with a traceback,
    'ConfigLoader is not set', before Hydra started); cell=${oc.env:...} is resolved by Hydra
    (it was taken for a class path)."""
    proc = _run(["-m", "cell=glob(mingru)", *TINY, "gradients.every=0",
                 f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "sweep" / "0_copy_mingru" / "summary.json").read_text())[
        "cell"] == "mingru"
    shown = _run(["--cfg", "job", "cell=${oc.env:RNNLAB_TEST_CELL,gru}"], cwd=tmp_path)
    assert "name: gru" in shown.stdout
