"""Runs that survive being killed: checkpoints, resumption, signals, broken checkpoints.

The acceptance test: a run killed with SIGKILL in the middle of training, then rerun in the
same folder, ends with bitwise the same metrics.jsonl, final metrics and parameters as the same
run uninterrupted (the reference, run beside it)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from rnnlab.checkpoint import Checkpoints
from rnnlab.config import compose
from rnnlab.train import make_train

STEPS = 160  # enough chunks after the signal at step 20 that the run cannot finish first
TINY = ["cell.hidden_size=8", "task.length=2", "task.copy_length=3", f"train.steps={STEPS}",
        "train.log_every=2", "train.num_seeds=2", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.every=20", "gradients.batch_size=4",
        "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false",
        "train.checkpoint_every=10"]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlab.run", *TINY, *extra,
                             f"hydra.run.dir={run_dir}"], cwd=run_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signal_at_checkpoint(runs: dict[str, tuple[Path, subprocess.Popen, signal.Signals]],
                         step: int) -> None:
    """Sends each process its signal as soon as it has a checkpoint at ``step`` or later (all
    watched at once, so that a slow one does not delay the signal of another; older
    checkpoints rotate out, ``train.checkpoint_keep``, so ``step`` itself can be missed)."""

    def reached(run_dir: Path) -> bool:
        folder = run_dir / "checkpoints"
        return folder.is_dir() and any(p.name.isdigit() and int(p.name) >= step
                                       for p in folder.iterdir())

    deadline = time.monotonic() + 300
    waiting = dict(runs)
    while waiting:
        for name, (run_dir, proc, signum) in list(waiting.items()):
            if reached(run_dir):
                proc.send_signal(signum)
                del waiting[name]
            else:
                assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no checkpoint in time: {sorted(waiting)}"
        time.sleep(0.02)


def final_params(run_dir: Path):
    trainer = make_train(compose(TINY))
    keys = jax.vmap(jax.random.key)(np.arange(2))
    like = {"state": jax.eval_shape(jax.vmap(trainer.init), keys)}
    ckpt = Checkpoints(run_dir)
    try:
        trees, host = ckpt.restore(ckpt.steps()[-1], like)
    finally:
        ckpt.close()
    return trees["state"].params, host


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, one killed with SIGKILL and one stopped with SIGTERM, both
    after a checkpoint, and one stopped with SIGTERM while it compiles (``early``), all rerun
    to the end; the four started together."""
    root = tmp_path_factory.mktemp("runs")
    dirs = {name: root / name for name in ("reference", "killed", "terminated", "early")}
    procs = {name: start(path) for name, path in dirs.items()}
    # the step-0 evaluation is logged before the first chunk is compiled
    deadline = time.monotonic() + 300
    while not (dirs["early"] / "metrics.jsonl").exists():
        assert procs["early"].poll() is None, procs["early"].communicate()
        assert time.monotonic() < deadline, "the early run logged nothing in time"
        time.sleep(0.005)
    procs["early"].send_signal(signal.SIGTERM)
    signal_at_checkpoint({"killed": (dirs["killed"], procs["killed"], signal.SIGKILL),
                          "terminated": (dirs["terminated"], procs["terminated"],
                                         signal.SIGTERM)}, 20)
    outcome = {name: (p.wait(timeout=600), *p.communicate()) for name, p in procs.items()}
    before = {name: sorted(p.name for p in dirs[name].iterdir()) for name in dirs}
    interrupted = json.loads((dirs["terminated"] / "summary.json").read_text())
    resumed = {name: start(dirs[name]) for name in ("killed", "terminated", "early")}
    for name, p in resumed.items():
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        outcome[f"{name}_resumed"] = (p.returncode, out, err)
    return dirs, outcome, before, interrupted


def test_killed_run_resumes_to_bitwise_the_same_result(runs):
    dirs, outcome, before, _ = runs
    assert outcome["reference"][0] == 0, outcome["reference"][2]
    assert outcome["killed"][0] == -signal.SIGKILL
    assert "summary.json" not in before["killed"]  # it really stopped mid-training
    ref_metrics = (dirs["reference"] / "metrics.jsonl").read_bytes()
    assert (dirs["killed"] / "metrics.jsonl").read_bytes() == ref_metrics  # row for row
    ref = json.loads((dirs["reference"] / "summary.json").read_text())
    got = json.loads((dirs["killed"] / "summary.json").read_text())
    assert got["final"] == ref["final"] and got["per_seed"] == ref["per_seed"]
    ref_params, _ = final_params(dirs["reference"])
    got_params, host = final_params(dirs["killed"])
    assert host["step"] == STEPS
    jax.tree.map(np.testing.assert_array_equal, got_params, ref_params)
    with np.load(dirs["reference"] / "gradients.npz") as a, \
            np.load(dirs["killed"] / "gradients.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    events = [json.loads(x) for x in (dirs["killed"] / "events.jsonl").read_text().splitlines()]
    # from a checkpoint: the one at step 20 or later the signal waited for, or the one before
    # it when the kill landed while step 20's was being committed (then unfinished and passed
    # over: see test_a_run_resumed_before_an_unfinished_checkpoint_writes_that_step_again)
    assert [e["event"] for e in events] == ["resumed"] and events[0]["step"] >= 10


def test_sigterm_checkpoints_then_resumes(runs):
    dirs, outcome, _, interrupted = runs
    code, _, err = outcome["terminated"]
    assert code == 1 and "SIGTERM" in err and "rerun the same command" in err, err
    assert interrupted["status"] == "interrupted"
    events = [json.loads(x) for x in (dirs["terminated"] / "events.jsonl").read_text()
              .splitlines()]
    # the interruption stays in the record (logged before its checkpoint), then the resumption
    assert [e["event"] for e in events[-2:]] == ["interrupted", "resumed"], events
    assert events[-2]["signal"] == "SIGTERM" and events[-2]["step"] == events[-1]["step"]
    assert (dirs["terminated"] / "metrics.jsonl").read_bytes() == (
        dirs["reference"] / "metrics.jsonl").read_bytes()
    ref_params, _ = final_params(dirs["reference"])
    got_params, _ = final_params(dirs["terminated"])
    jax.tree.map(np.testing.assert_array_equal, got_params, ref_params)


def test_sigterm_while_compiling_stops_after_the_first_chunk_then_resumes(runs):
    """A stop signal during start-up or compilation is taken up after the first chunk (with
    a checkpoint and an ``interrupted`` event), not lost with the process; the rerun ends
    bitwise as the uninterrupted run."""
    dirs, outcome, before, _ = runs
    code, _, err = outcome["early"]
    assert code == 1 and "SIGTERM" in err and "rerun the same command" in err, err
    assert "summary.json" in before["early"] and "checkpoints" in before["early"]
    events = [json.loads(x) for x in (dirs["early"] / "events.jsonl").read_text()
              .splitlines()]
    assert [e["event"] for e in events] == ["interrupted", "resumed"], events
    # the signal landed before the first chunk had run (while it compiled)
    assert events[0]["step"] == events[1]["step"] < STEPS // 2, events
    assert (dirs["early"] / "metrics.jsonl").read_bytes() == (
        dirs["reference"] / "metrics.jsonl").read_bytes()
    ref = json.loads((dirs["reference"] / "summary.json").read_text())
    got = json.loads((dirs["early"] / "summary.json").read_text())
    assert got["status"] == "ok" and got["final"] == ref["final"]


def test_finished_run_is_not_resumed_and_other_config_is_refused(runs, tmp_path):
    dirs, *_ = runs
    proc = start(dirs["reference"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "already holds a finished run" in err
    # an unfinished folder of another config: say which keys differ
    other = tmp_path / "other"
    shutil.copytree(dirs["killed"], other, ignore=shutil.ignore_patterns("summary.json"))
    proc = start(other, "cell.hidden_size=16")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "holds a run of another config" in err and "cell.hidden_size: 8 -> 16" in err
    assert "Traceback" not in err


def test_broken_checkpoints_fall_back_then_refuse(runs, tmp_path):
    dirs, *_ = runs
    run = tmp_path / "broken"
    shutil.copytree(dirs["killed"], run, ignore=shutil.ignore_patterns("summary.json"))
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert len(steps) == 2
    newest = run / "checkpoints" / str(steps[-1])
    for f in newest.rglob("*"):  # truncate every array file of the newest checkpoint
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:7])
    trainer = make_train(compose(TINY))
    like = {"state": jax.eval_shape(jax.vmap(trainer.init),
                                    jax.vmap(jax.random.key)(np.arange(2)))}
    ckpt = Checkpoints(run)
    try:
        step, _, _ = ckpt.restore_latest(like)
        assert step == steps[0]  # fell back to the one before
        assert [s["step"] for s in ckpt.skipped] == [steps[-1]]
        assert str(newest) in ckpt.skipped[0]["error"]
    finally:
        ckpt.close()
    # the command line resumes there too, finishes, and its events keep what it fell back over
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    proc = start(resumed)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "trying the checkpoint before it" in err
    events = [json.loads(line) for line in (resumed / "events.jsonl").read_text().splitlines()]
    event = [e for e in events if e["event"] == "resumed"][-1]  # the killed run's came before
    assert event["step"] == steps[0]
    [skipped] = event["skipped_checkpoints"]
    assert skipped["step"] == steps[-1] and str(steps[-1]) in skipped["error"]
    ckpt = Checkpoints(run)
    try:
        for s in steps:  # now break the older one too
            for f in (run / "checkpoints" / str(s)).rglob("*"):
                if f.is_file() and f.parent.name == "d":
                    f.write_bytes(b"")
        with pytest.raises(Exception, match=str(run / "checkpoints")):
            ckpt.restore_latest(like)
    finally:
        ckpt.close()
    proc = start(run)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "train.resume=false" in err and "Traceback" not in err
    assert str(run / "checkpoints") in err


def _two_seed_state(tmp_path):
    """A tiny trainer's first state for two seeds, its shapes (``like``), and an empty
    :class:`Checkpoints` in ``tmp_path``."""
    trainer = make_train(compose(TINY))
    keys = jax.vmap(jax.random.key)(np.arange(2))
    state = jax.jit(jax.vmap(trainer.init))(keys)
    like = {"state": jax.eval_shape(jax.vmap(trainer.init), keys)}
    return state, like, keys, Checkpoints(tmp_path)


def test_checkpoint_of_another_layout_is_refused(tmp_path):
    from rnnlab import checkpoint

    state, like, keys, ckpt = _two_seed_state(tmp_path)
    try:
        ckpt.save(10, {"state": state}, {"loop": {}})
        trees, host = ckpt.restore(10, like)
        jax.tree.map(np.testing.assert_array_equal, trees["state"].params, state.params)
        assert host["layout"] == checkpoint.LAYOUT
        host_file = next((tmp_path / "checkpoints" / "10" / "host").glob("metadata"))
        data = json.loads(host_file.read_text())
        data["layout"] = 0
        host_file.write_text(json.dumps(data))
        with pytest.raises(checkpoint.CheckpointError, match=r"host/metadata is truncated or "
                                                            r"changed"):
            ckpt.restore(10, like)  # the manifest notices the edit first
        ckpt._write_manifest(10)  # as if an older rnnlab had written it whole
        with pytest.raises(checkpoint.CheckpointError, match="layout 0, written by another"):
            ckpt.restore(10, like)
        # layout 2 (before the dropout rate joined TrainState.hparams) holds the same state
        # for a model without dropout: read; for a model with dropout: refused by name
        data["layout"] = 2
        host_file.write_text(json.dumps(data))
        ckpt._write_manifest(10)
        trees, _ = ckpt.restore(10, like)
        jax.tree.map(np.testing.assert_array_equal, trees["state"].params, state.params)
        with_dropout = make_train(compose([*TINY, "model.dropout=0.2"]))
        like_dropout = {"state": jax.eval_shape(jax.vmap(with_dropout.init), keys)}
        assert "dropout" in like_dropout["state"].hparams
        with pytest.raises(checkpoint.CheckpointError, match="layout 2, written by another"):
            ckpt.restore(10, like_dropout)
    finally:
        ckpt.close()
    assert os.path.isdir(tmp_path / "checkpoints")


def test_stop_signal_checkpoints_then_hands_over_to_the_previous_handler(tmp_path):
    """What submitit relies on: after the checkpoint, its own handler (here a stand-in that
    records the call) gets the signal, so it can requeue the job."""
    from rnnlab.logging import LocalSink, Logger
    from rnnlab.loop import Interrupted, StopSignals, fit

    cfg = compose([*TINY, "train.steps=8"])
    trainer = make_train(cfg)
    keys = jax.vmap(jax.random.key)(np.arange(2))
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    logger = Logger([LocalSink(tmp_path, plots=False)])
    logger.start({}, {})
    ckpt = Checkpoints(tmp_path)
    try:
        with StopSignals() as stop:
            stop.received = signal.SIGUSR2  # as if the signal arrived during the first chunk
            with pytest.raises(Interrupted, match="SIGUSR2"):
                fit(trainer, keys, logger, [0, 1], gradients_every=None, progress=False,
                    checkpoints=ckpt, checkpoint_every=None, stop=stop)
        assert calls == [signal.SIGUSR2]
        assert ckpt.steps() == [2]  # the chunk in flight finished, then the checkpoint
    finally:
        ckpt.close()
        signal.signal(signal.SIGUSR2, previous)
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events == [{"event": "interrupted", "step": 2, "signal": "SIGUSR2"}]


def test_compilation_cache_setting_reaches_jax(tmp_path):
    from rnnlab.jobs import use_compilation_cache

    before = jax.config.jax_compilation_cache_dir
    try:
        use_compilation_cache(compose([f"train.compilation_cache={tmp_path}/cache"]))
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
        assert (tmp_path / "cache").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_default_compilation_cache_lives_under_the_xdg_cache_home(tmp_path, monkeypatch):
    """The default cache folder follows the XDG base-directory convention: $XDG_CACHE_HOME
    when set (the test-suite points it at a temporary folder, so tests never fill the user's
    cache), else ~/.cache."""
    from rnnlab.jobs import use_compilation_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cfg = compose([])
    assert cfg.train.compilation_cache == f"{tmp_path}/xdg/rnnlab/jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cfg.train.compilation_cache == "~/.cache/rnnlab/jax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = jax.config.jax_compilation_cache_dir
    try:
        use_compilation_cache(cfg)
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xdg" / "rnnlab" / "jax")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_a_run_resumed_before_an_unfinished_checkpoint_writes_that_step_again(tmp_path):
    """A kill between orbax's commit and the manifest leaves step 20 unfinished; the run
    resumes from step 10 and, reaching step 20 again, replaces it (orbax alone refuses a step
    that exists)."""
    state, like, _, ckpt = _two_seed_state(tmp_path)
    try:
        ckpt.save(10, {"state": state}, {"loop": {}})
        ckpt.save(20, {"state": state}, {"loop": {"mark": "first"}})
        (tmp_path / "checkpoints" / "20" / "manifest.json").unlink()
        step, _, _ = ckpt.restore_latest(like)
        assert step == 10
        ckpt.save(20, {"state": state}, {"loop": {"mark": "again"}})
        step, _, host = ckpt.restore_latest(like)
        assert (step, host["loop"]["mark"]) == (20, "again")
    finally:
        ckpt.close()


def test_a_resumed_run_keeps_its_wandb_run(tmp_path, monkeypatch):
    """The W&B run id is part of the logger's position in a checkpoint; the resumed run's sink
    reopens that run (offline here: no network)."""
    from rnnlab.logging import WandbSink

    monkeypatch.setenv("WANDB_SILENT", "true")
    first = WandbSink(tmp_path, mode="offline")
    first.start({"a": 1}, {})
    position = first.position()
    first.finish({"status": "interrupted"})
    assert position["wandb_id"]
    again = WandbSink(tmp_path, mode="offline", run_id=position["wandb_id"])
    again.start({"a": 1}, {})
    try:
        assert again.run.id == position["wandb_id"]
    finally:
        again.finish({"status": "ok"})
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # W&B names a run's folder offline-run-<time>-<id>, with "-1" added when the second run
    # starts within the same second as the first
    pattern = rf"offline-run-\d{{8}}_\d{{6}}-{position['wandb_id']}(-\d+)?"
    assert len(runs) == 2 and all(re.fullmatch(pattern, r.name) for r in runs), runs


class _Killed(BaseException):
    """Stands in for a signal's default action ending the process (no handler, no cleanup)."""


def test_a_run_killed_while_finishing_resumes_and_finishes(tmp_path, monkeypatch):
    """Killed after training, while its figures are drawn: summary.json is the run's last
    write, so the folder holds none and the rerun resumes from the final checkpoint, redoes
    the final evaluation and figures, and ends as the uninterrupted run does."""
    from rnnlab import plots
    from rnnlab.loop import execute

    cfg = compose([*TINY, "train.steps=8", "logger.plots=true", "gradients.every=4"])
    want = execute(cfg, tmp_path / "reference")

    def killed(run_dir, summary=None):
        raise _Killed

    run = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(plots, "run_plots", killed)
        with pytest.raises(_Killed):
            execute(cfg, run)
    assert not (run / "summary.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit())[-1] == "8"
    got = execute(cfg, run)
    assert got["status"] == "ok" and got["per_seed"] == want["per_seed"]
    assert json.loads((run / "summary.json").read_text())["status"] == "ok"
    assert ((run / "metrics.jsonl").read_text()
            == (tmp_path / "reference" / "metrics.jsonl").read_text())
    for name in ("learning_curve.png", "gradients.png", "gradients_heatmap.png"):
        assert (run / name).stat().st_size > 0, name
    assert not list(run.glob("*.tmp.json"))


@pytest.mark.parametrize("launcher", [[], pytest.param(["hydra/launcher=packed"],
                                                       marks=pytest.mark.slow)])
def test_a_stopped_sweep_starts_no_more_jobs_and_its_rerun_finishes_them(launcher, tmp_path):
    """SIGTERM while job 0 of a 2-job sweep trains: job 0 checkpoints and is interrupted, job 1
    does not start (no folder, a NOT STARTED line), the command exits 1; rerunning the sweep
    resumes job 0 and runs job 1 (before, job 1 trained to the end after the signal)."""
    sweep = tmp_path / "sweep"
    # two widths: two packed groups as well, the second never started
    tiny = [o for o in TINY if not o.startswith("cell.hidden_size=")]
    cmd = [sys.executable, "-m", "rnnlab.run", "-m", *launcher, *tiny,
           "cell.hidden_size=8,12", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = sweep / "0_copy_lstm"
    signal_at_checkpoint({"sweep": (first, proc, signal.SIGTERM)}, 20)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "INTERRUPTED" in err and "1 (" in err and "NOT STARTED" in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_copy_lstm"]
    assert json.loads((first / "summary.json").read_text())["status"] == "interrupted"
    assert "1 more did not start" in (sweep / "sweep.md").read_text()
    assert "1 not started" in out
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(sweep / "sweep.csv")
    assert list(table.job) == ["0_copy_lstm", "1_copy_lstm"]
    assert list(table.status) == ["ok", "ok"]


def test_ctrl_c_stops_after_the_chunk_and_twice_at_once(tmp_path):
    """Ctrl-C (SIGINT) is a stop signal: the first is kept for the host loop (which then
    checkpoints and raises Interrupted, not KeyboardInterrupt); a second exits at once with
    status 130 and one line, as SIGKILL would."""
    from rnnlab.loop import Interrupted, StopSignals

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal gives it
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs in this thread between bytecodes
            assert stop.received == signal.SIGINT
            with pytest.raises(Interrupted, match="SIGINT"):
                stop.forward()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    twice = ("import os, signal, time\n"
             "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
             "from rnnlab.loop import StopSignals\n"
             "with StopSignals():\n"
             "    os.kill(os.getpid(), signal.SIGINT); time.sleep(0.05)\n"
             "    os.kill(os.getpid(), signal.SIGINT); time.sleep(5)\n"
             "print('not reached')\n")
    proc = subprocess.run([sys.executable, "-c", twice], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 130 and "not reached" not in proc.stdout, proc.stderr
    assert "stopped by Ctrl-C" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path):
    """Ctrl-C during the command's imports (before any run folder): status 130, one line."""
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab.run", *TINY,
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)  # past the interpreter's start (rnnlab's handler), before any training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by Ctrl-C" in err and "Traceback" not in err
