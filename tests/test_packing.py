"""Packed sweeps: jobs that differ only in packable values train as the members of one program
(rnnlab.packing, hydra/launcher=packed) and each ends exactly as it would have alone."""

import json
import logging
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from rnnlab import loop, packing
from rnnlab.config import compose
from rnnlab.loop import build, execute
from rnnlab.train import build_optimizer, make_train

TINY = ["cell=rnn", "cell.hidden_size=8", "task.length=2", "task.copy_length=3", "train.steps=6",
        "train.log_every=2", "train.num_seeds=2", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.enabled=false", "logger.progress=false",
        "logger.wandb.mode=disabled", "logger.plots=false", "train.compilation_cache=null",
        "optim=adamw", "optim.schedule=warmup_cosine", "optim.warmup_steps=2",
        "train.checkpoint_every=0"]
# A: no clipping, no decay; B: another learning rate, decay, a threshold the gradients exceed,
# other initialisers (init-only cell fields), another dropout rate; C: a learning rate that
# diverges
JOBS = {"a": ["optim.learning_rate=1e-2", "optim.weight_decay=0", "optim.grad_clip=null",
              "model.dropout=0.1"],
        "b": ["optim.learning_rate=3e-2", "optim.weight_decay=0.5", "optim.grad_clip=0.05",
              "cell.kernel_init=glorot_normal", "cell.recurrent_init=identity",
              "model.dropout=0.4"],
        "c": ["optim.learning_rate=1e38", "optim.grad_clip=null", "train.seed=5",
              "model.dropout=0.2"]}
RTOL = 1e-5


def _metrics(run_dir: Path) -> pd.DataFrame:
    df = pd.read_json(run_dir / "metrics.jsonl", lines=True)
    return df.sort_values(["split", "step", "seed"]).reset_index(drop=True)


def _assert_same_metrics(got: Path, want: Path) -> None:
    a, b = _metrics(got), _metrics(want)
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    assert (a[["split", "step", "seed"]] == b[["split", "step", "seed"]]).all().all()
    numeric = [c for c in a.columns if c not in ("split", "step", "seed")]
    np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float),
                               rtol=RTOL, atol=1e-7)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Jobs a and b each alone (the reference), and a, b, c packed into one program."""
    root = tmp_path_factory.mktemp("packing")
    cfgs = {k: compose([*TINY, *v]) for k, v in JOBS.items()}
    compiled = _CountChunkCompiles()
    logging.getLogger("jax").addHandler(compiled)
    try:
        with jax.log_compiles(True):
            for k in ("a", "b"):
                execute(cfgs[k], root / f"alone_{k}")
            alone, compiled.count, compiled.inits = compiled.count, 0, 0
            outcome = packing.execute_packed([(cfgs[k], root / f"packed_{k}",
                                               build(cfgs[k])) for k in JOBS])
    finally:
        logging.getLogger("jax").removeHandler(compiled)
    return (root, cfgs, dict(zip(JOBS, outcome, strict=True)),
            (alone, compiled.count, compiled.inits))


class _CountChunkCompiles(logging.Handler):
    """Counts XLA compilations of the training chunk and of the initialisation
    (``jax.log_compiles``' messages)."""

    count = 0
    inits = 0

    def emit(self, record):
        if record.getMessage().startswith("Finished XLA compilation of jit(run_chunk)"):
            self.count += 1
        if record.getMessage().startswith("Finished XLA compilation of jit(init)"):
            self.inits += 1


def test_a_packed_group_compiles_its_training_chunk_once(runs):
    *_, (alone, packed, inits) = runs
    assert (alone, packed) == (2, 1)  # two jobs alone: two programs; three packed: one
    # a and c initialise alike (their dropout rates differ, which init does not read); b has
    # its own initialisers
    assert inits == 2


def test_packed_members_match_separate_runs(runs):
    """Learning rate, weight decay, clipping, initialisers and dropout rate per member: each
    packed job logs, row for row, what the same job logs when it runs alone."""
    root, _, outcome, _ = runs
    for k in ("a", "b"):
        assert outcome[k]["status"] == "ok" and outcome[k]["packed_members"] == 6
        _assert_same_metrics(root / f"packed_{k}", root / f"alone_{k}")
        alone = json.loads((root / f"alone_{k}" / "summary.json").read_text())
        for seed, row in alone["per_seed"].items():
            for name, value in row.items():
                if isinstance(value, float):
                    assert outcome[k]["per_seed"][seed][name] == pytest.approx(value, rel=RTOL)
    # the members really differ: learning rates as configured, clipping where it was set
    a, b = _metrics(root / "packed_a"), _metrics(root / "packed_b")
    train_a, train_b = a[a.split == "train"], b[b.split == "train"]
    assert not np.allclose(train_a["loss"], train_b["loss"])
    assert (train_a["grad_norm_clipped"] == train_a["grad_norm"]).all()
    np.testing.assert_allclose(train_b["grad_norm_clipped"], 0.05, rtol=1e-6)
    assert (train_b["grad_norm"] > 0.05).all()
    # warmup_cosine over 6 steps, 2 warm-up: the last chunk's last step is step 5
    lr = optax.warmup_cosine_decay_schedule(0.0, 3e-2, 2, 6, end_value=0.0)(5)
    assert train_b["learning_rate"].iloc[-1] == pytest.approx(float(lr), rel=1e-6)
    # each job's folder has what an unpacked job's folder has
    names = {p.name for p in (root / "alone_a").iterdir()}
    assert names == {p.name for p in (root / "packed_a").iterdir()}


def test_a_diverging_member_stops_alone(runs):
    root, _, outcome, _ = runs
    assert isinstance(outcome["c"], FloatingPointError)
    summary = json.loads((root / "packed_c" / "summary.json").read_text())
    assert summary["status"] == "failed" and "diverged for every seed" in summary["error"]
    events = [json.loads(x) for x in (root / "packed_c" / "events.jsonl").read_text()
              .splitlines()]
    assert {e["seed"] for e in events if e["event"] == "diverged"} == {5, 6}
    # a and b trained to the end beside it (checked against their runs alone above)
    assert outcome["a"]["steps_run"] == outcome["b"]["steps_run"] == 6


def test_a_program_continues_without_the_members_of_a_job_that_stopped(runs, tmp_path):
    """repack="always": once job c's members have all diverged (its first chunk), the program
    is recompiled for a's and b's four members alone; a and b log what they log alone (and
    what they log packed with c beside them to the end)."""
    root, cfgs, _, _ = runs
    compiled = _CountChunkCompiles()
    logging.getLogger("jax").addHandler(compiled)
    try:
        with jax.log_compiles(True):
            outcome = packing.execute_packed([(cfgs[k], tmp_path / k, build(cfgs[k]))
                                              for k in JOBS], repack="always")
    finally:
        logging.getLogger("jax").removeHandler(compiled)
    a, b, c = outcome
    assert isinstance(c, FloatingPointError) and a["steps_run"] == b["steps_run"] == 6
    assert compiled.count == 2  # 6 members, then 4
    for k in ("a", "b"):
        _assert_same_metrics(tmp_path / k, root / f"alone_{k}")
        events = [json.loads(x) for x in (tmp_path / k / "events.jsonl").read_text()
                  .splitlines()]
        assert [e for e in events if e["event"] == "repacked"] == [
            {"event": "repacked", "step": 2, "members": 4, "of": 6}]
    for k, got in (("a", a), ("b", b)):  # the final evaluation too
        alone = json.loads((root / f"alone_{k}" / "summary.json").read_text())["final"]
        for metric, stats in alone.items():
            assert got["final"][metric] == pytest.approx(stats, rel=RTOL, abs=1e-7)


@pytest.mark.parametrize("idle, members, seconds, left, want", [
    (0, 6, [3.0, 1.0, 1.0], 10, False),  # nothing idles
    (6, 6, [3.0, 1.0, 1.0], 10, False),  # nothing would be left to train
    (1, 6, [3.0, 1.0, 1.0], 100, False),  # under a quarter of the rows
    (2, 6, [3.0, 1.0, 1.0], 100, True),  # 2/6 x 1 s x 100 chunks > 2 x 2 s of compilation
    (2, 6, [3.0, 1.0, 1.0], 12, False),  # 4 s saved, not more than 4 s of compiling
    (2, 6, [3.0], 100, False),  # no steady chunk measured yet
    (2, 6, [3.0, 1.0, 1.0], 0, False),  # no chunk left
])
def test_repacking_pays_when_the_idle_rows_cost_more_than_recompiling(idle, members, seconds,
                                                                     left, want):
    assert loop._repack_pays("auto", idle, members, seconds, left) is want
    assert loop._repack_pays("never", idle, members, seconds, left) is False
    assert loop._repack_pays("always", idle, members, seconds, left) is (
        0 < idle < members and left > 0)


def test_the_packed_launcher_refuses_an_unknown_repack(capsys):
    from hydra_plugins.rnnlab_packed import PackedLauncher

    with pytest.raises(SystemExit) as exit_info:
        PackedLauncher(repack="sometimes")
    assert exit_info.value.code == 2
    assert "hydra.launcher.repack must be one of auto, always, never; got 'sometimes'" in \
        capsys.readouterr().err


def test_traced_optimizer_values_equal_the_static_optimizer():
    """The optimizer built from traced per-member values (what a packed program runs) against
    optax built from the config's Python floats, over three updates."""
    cfg = compose([*TINY, *JOBS["b"]])
    trainer = make_train(cfg)
    params = {"w": jnp.asarray(np.linspace(-1.0, 1.0, 6, dtype=np.float32))}
    grads = [{"w": jnp.asarray(np.full(6, g, np.float32))} for g in (0.3, -2.0, 0.7)]
    static, _ = build_optimizer(cfg.optim, int(cfg.train.steps))

    def run(tx, params):
        with jax.numpy_dtype_promotion("standard"):
            state = tx.init(params)
            for g in grads:
                updates, state = tx.update(g, state, params)
                params = optax.apply_updates(params, updates)
        return params

    @jax.jit
    def traced(hp, params):
        tx, _ = trainer.optimizer(hp)
        return run(tx, params)

    hp = {k: jnp.float32(v) for k, v in trainer.hparams.items()}
    np.testing.assert_allclose(traced(hp, params)["w"], run(static, params)["w"], rtol=1e-6)


def test_the_packed_preset_sets_the_launchers_arguments():
    import inspect

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from hydra_plugins.rnnlab_packed import PackedLauncher
    from rnnlab.config import config_dir, register_configs

    register_configs([])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=["hydra/launcher=packed"],
                            return_hydra_config=True)
    node = cfg.hydra.launcher
    assert node._target_ == "hydra_plugins.rnnlab_packed.PackedLauncher"
    params = set(inspect.signature(PackedLauncher.__init__).parameters) - {"self"}
    assert set(node.keys()) - {"_target_"} == params


def test_unpackable_differences_split_groups():
    base = ["optim.learning_rate=1e-3"]
    cases = [base, ["optim.learning_rate=3e-3", "train.seed=4", "train.num_seeds=3"],
             ["optim.weight_decay=0.1", "optim.grad_clip=null", "logger.plots=false"],
             ["cell=gru"], ["cell.hidden_size=16"], ["task.length=3"], ["optim=sgd"],
             ["optim.schedule=cosine"], ["model.dropout=0.1"], ["train.steps=2000"],
             ["cell.forget_bias=2.0", "cell.kernel_init=he_normal", "cell.bias_init=ones"],
             ["cell.init_preset=pytorch"], ["model.dropout=0.3", "optim.learning_rate=1e-2"]]
    cfgs = [compose(c) for c in cases]
    # dropout rates pack among jobs with dropout (8, 12), not with a job without (0)
    assert packing.group_jobs(cfgs) == [[0, 1, 2, 10], [3], [4], [5], [6], [7], [8, 12], [9],
                                        [11]]
    with pytest.raises(ValueError, match=r"differ outside the packable keys \(.*cell.name"):
        packing.execute_packed([(cfgs[0], Path("unused_a"), None),
                                (cfgs[3], Path("unused_b"), None)])
    assert not Path("unused_a").exists()
    # a cap on members cuts a group between jobs (3 seeds each)
    assert packing.group_jobs(cfgs[:3], max_members=5) == [[0], [1], [2]]
    assert packing.group_jobs(cfgs[:3], max_members=6) == [[0, 1], [2]]
    assert packing.group_jobs(cfgs[:3], max_members=9) == [[0, 1, 2]]


def test_a_packed_group_checkpoints_and_resumes(runs, monkeypatch):
    """A stop signal after the first chunk: both jobs checkpoint into their own folders and
    end interrupted; rerun, they resume and end as the jobs alone did."""
    root, *_ = runs

    class StopAtOnce(loop.StopSignals):
        def __enter__(self):
            super().__enter__()
            self.received = signal.SIGUSR2  # as if it arrived during the first chunk
            return self

    dirs = [root / "resumed_a", root / "resumed_b"]
    cfgs = {k: compose([*TINY, *JOBS[k], "train.checkpoint_every=2"]) for k in "ab"}
    entries = [(cfgs[k], d, build(cfgs[k])) for k, d in zip("ab", dirs, strict=True)]
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        with monkeypatch.context() as m:
            m.setattr(loop, "StopSignals", StopAtOnce)
            first = packing.execute_packed(entries)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert all(isinstance(o, loop.Interrupted) for o in first)
    for d in dirs:
        assert json.loads((d / "summary.json").read_text())["status"] == "interrupted"
        assert sorted(int(p.name) for p in (d / "checkpoints").iterdir()
                      if p.name.isdigit()) == [2]
    again = packing.execute_packed(entries)
    for k, d, o in zip("ab", dirs, again, strict=True):
        assert o["status"] == "ok" and o["steps_run"] == 6
        _assert_same_metrics(d, root / f"alone_{k}")
        events = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
        assert [(e["event"], e["step"]) for e in events] == [("interrupted", 2), ("resumed", 2)]


COUNT_COMPILES = r"""
import atexit, logging, os
import jax

COMPILED = {}


class _Count(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        if text.startswith("Finished XLA compilation of jit(run_chunk)"):
            COMPILED[os.getcwd()] = COMPILED.get(os.getcwd(), 0) + 1


jax.config.update("jax_log_compiles", True)
logging.getLogger("jax").addHandler(_Count())
atexit.register(lambda: open(EXTRA, "w").write(json.dumps(COMPILED)))
"""


@pytest.mark.slow
def test_cli_sweep_packed_and_unpacked_make_the_same_jobs_and_packing_compiles_once(tmp_path):
    """``-m optim.learning_rate=1e-3,3e-3,-1 train.num_seeds=2`` with and without
    ``hydra/launcher=packed``: the same folders, files and sweep.csv rows (the bad value
    refused alone, naming the field), and the packed sweep compiles its training chunk once
    where the unpacked one compiles it per job."""
    from cli_driver import run_command_lines

    tiny = ["cell=rnn", "cell.hidden_size=4", "task.length=2", "task.copy_length=3",
            "train.steps=4", "train.log_every=2", "train.num_seeds=2", "train.batch_size=4",
            "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
            "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false",
            "train.compilation_cache=null", "optim.learning_rate=1e-3,3e-3,-1"]
    cases = []
    for name, launcher in (("packed", ["hydra/launcher=packed"]), ("alone", [])):
        (tmp_path / name).mkdir()
        cases.append((["-m", *launcher, *tiny, f"hydra.sweep.dir={tmp_path / name}/sweep"],
                      tmp_path / name))
    (tmp_path / "refused").mkdir()
    cases.append((["-m", "hydra/launcher=packed", "hydra.launcher.max_members=0", *tiny,
                   f"hydra.sweep.dir={tmp_path}/refused/sweep"], tmp_path / "refused"))
    counts = tmp_path / "compiles.json"
    packed, alone, refused = run_command_lines(cases, prelude=COUNT_COMPILES,
                                               extra=str(counts))
    assert packed["code"] == alone["code"] == 1, (packed["err"], alone["err"])
    for out in (packed, alone):
        assert "optim.learning_rate=-1" in out["err"] and "FAILED" in out["err"]
    compiled = json.loads(counts.read_text())
    assert compiled == {str(tmp_path / "packed"): 1, str(tmp_path / "alone"): 2}
    a, b = (pd.read_csv(tmp_path / n / "sweep" / "sweep.csv") for n in ("packed", "alone"))
    assert list(a["job"]) == list(b["job"]) == ["0_copy_rnn", "1_copy_rnn", "2_copy_rnn"]
    assert list(a["status"]) == list(b["status"]) == ["ok", "ok", "failed"]
    for col in ("metric", "seeds", "diverged_seeds", "overrides"):
        assert list(a[col].fillna("")) == list(b[col].fillna("")), col
    assert list(a["metric"]) == ["accuracy"] * 3  # the refused job's too (the copy task's)
    np.testing.assert_allclose(a["mean"][:2], b["mean"][:2], rtol=RTOL)
    assert "optim.learning_rate" in a["error"][2] and "-1" in a["error"][2]
    for job in a["job"]:
        listing = [sorted(p.name for p in (tmp_path / n / "sweep" / job).iterdir())
                   for n in ("packed", "alone")]
        assert listing[0] == listing[1], job
    for job in a["job"][:2]:
        _assert_same_metrics(tmp_path / "packed" / "sweep" / job,
                             tmp_path / "alone" / "sweep" / job)
    # a bad launcher value: one line naming it, nothing run
    assert refused["code"] == 2 and "hydra.launcher.max_members" in refused["err"]
    assert "0" in refused["err"] and "Traceback" not in refused["err"]
    assert not (tmp_path / "refused" / "sweep").exists()


@pytest.mark.slow  # stopping alone is in CI through the diverging member
def test_a_job_that_stops_early_stops_alone(tmp_path):
    """Early stopping per job: with patience 1, the job at learning rate 3 stops at its
    first evaluation (no improvement) and logs nothing after it; the other trains on."""
    tiny = [o for o in TINY if not o.startswith(("optim", "train.steps"))]
    common = [*tiny, "train.steps=8", "train.early_stopping_patience=1",
              "train.divergence_factor=null", "optim.grad_clip=null"]
    cfgs = [compose([*common, "optim.learning_rate=1e-2"]),
            compose([*common, "optim.learning_rate=3.0"])]
    ends = {}
    for repack in ("never", "always"):  # always: the program continues with job 0 alone
        slow, fast = packing.execute_packed([(c, tmp_path / repack / str(i), build(c))
                                             for i, c in enumerate(cfgs)], repack=repack)
        assert (slow["stopped_early"], slow["steps_run"]) == (False, 8)
        assert (fast["stopped_early"], fast["steps_run"]) == (True, 2)
        assert _metrics(tmp_path / repack / "1")["step"].max() == 2
        assert _metrics(tmp_path / repack / "0")["step"].max() == 8
        ends[repack] = (slow["final"], fast["final"])
    # the job that stopped reports its best state's evaluation either way
    for never, always in zip(ends["never"], ends["always"], strict=True):
        for metric, stats in never.items():
            assert always[metric] == pytest.approx(stats, rel=RTOL, abs=1e-7)
    _assert_same_metrics(tmp_path / "always" / "0", tmp_path / "never" / "0")


REPACK_PADDED = r"""
import json, sys
from pathlib import Path
from rnnlab import packing
from rnnlab.config import compose
from rnnlab.loop import build, execute
tiny, jobs, root = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
cfgs = {k: compose([*tiny, *v]) for k, v in jobs.items()}
for k in ("a", "b"):
    execute(compose([*tiny, *jobs[k], "train.devices=1"]), root / f"alone_{k}")
out = packing.execute_packed([(cfgs[k], root / k, build(cfgs[k])) for k in jobs],
                             repack="always")
print(json.dumps([o if isinstance(o, dict) else repr(o) for o in out]))
"""


def test_a_padded_program_repacks_padded_again(tmp_path):
    """Seven members on two devices (a: 3 seeds, b: 2, c: 2) run as 4 + 4 rows, one a copy;
    once c has diverged the five left run as 3 + 3, one a copy again. a and b log what they
    log alone on one device."""
    import os
    import subprocess
    import sys

    jobs = {"a": [*JOBS["a"], "train.num_seeds=3"], "b": JOBS["b"],
            "c": [*JOBS["c"], "train.seed=7"]}
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2"}
    proc = subprocess.run([sys.executable, "-c", REPACK_PADDED, json.dumps(TINY),
                           json.dumps(jobs), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b, c = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "FloatingPointError" in c
    assert (a["devices"], a["padding_members"], a["packed_members"]) == (2, 1, 7)
    assert a["steps_run"] == b["steps_run"] == 6
    for k in ("a", "b"):
        _assert_same_metrics(tmp_path / k, tmp_path / f"alone_{k}")
        events = [json.loads(x) for x in (tmp_path / k / "events.jsonl").read_text()
                  .splitlines()]
        assert [e for e in events if e["event"] == "repacked"] == [
            {"event": "repacked", "step": 2, "members": 5, "of": 7}]
        alone = json.loads((tmp_path / f"alone_{k}" / "summary.json").read_text())
        assert alone["devices"] == 1
        for metric, stats in alone["final"].items():
            assert (a, b)[k == "b"]["final"][metric] == pytest.approx(stats, rel=RTOL,
                                                                      abs=1e-7)


def test_packed_jobs_too_large_together_train_as_several_programs(tmp_path, monkeypatch,
                                                                  capsys):
    """Each job fits the memory alone but not all together: they are cut, in order, into
    programs that fit, and every job trains to the same result as in one program."""
    from rnnlab import train

    cfgs = [compose([*TINY, "train.num_seeds=2", f"optim.learning_rate={lr}"])
            for lr in (1e-3, 3e-3, 1e-2)]
    trainers = [build(c) for c in cfgs]
    one = sum(train.state_bytes(trainers[0])) * 2  # one job's 2 members
    monkeypatch.setattr(train, "device_memory_bytes", lambda: 2 * one)
    assert packing.memory_batches(list(zip(cfgs, trainers, strict=True))) == [[0, 1], [2]]
    assert "they train as 2 programs" in capsys.readouterr().err
    monkeypatch.setattr(train, "device_memory_bytes", lambda: None)  # unknown: one program
    assert packing.memory_batches(list(zip(cfgs, trainers, strict=True))) == [[0, 1, 2]]

    def run(folder, memory):
        monkeypatch.setattr(train, "device_memory_bytes", lambda: memory)
        group = [packing.PackedJob(c, tmp_path / folder / str(i), i, f"job{i}")
                 for i, c in enumerate(cfgs)]
        return packing.run_group(group)

    split = run("split", one)  # one job per program
    assert "they train as 3 programs" in capsys.readouterr().err
    together = run("together", None)
    assert all(v is not None for v in split)
    np.testing.assert_allclose(split, together, rtol=1e-6)
