"""Launchers and sweepers (``hydra/launcher=...``, ``hydra/sweeper=...``): every preset composes
against its plugin's own schema; the SLURM preset's sbatch script carries the requested
resources; real sweeps with joblib and submitit_local write the same run folders as the basic
launcher; an Optuna study survives failed trials and records its best job; a missing plugin or
an unknown preset is refused with one line. The real sweeps are ``slow``."""

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from cli_driver import run_command_lines
from rnnlab import launchers
from rnnlab.config import config_dir, register_configs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["cell.hidden_size=8", "task.copy_length=3", "train.steps=4", "train.log_every=2",
        "train.num_seeds=2", "train.batch_size=4", "train.eval_batch_size=8",
        "gradients.every=2", "gradients.batch_size=4", "logger.progress=false",
        "logger.wandb.mode=disabled", "logger.plots=false"]
LAUNCHERS = sorted(p.stem for p in (config_dir() / "hydra" / "launcher").glob("*.yaml"))
SWEEPERS = sorted(p.stem for p in (config_dir() / "hydra" / "sweeper").glob("*.yaml"))


def _compose(overrides):
    """The full config (with its ``hydra`` node) the command line would compose."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3",
                               job_name="rnnlab"):
        return compose(config_name="config", overrides=list(overrides),
                       return_hydra_config=True)


def _plugin_schema(group, name):
    """The dataclass the plugin itself ships for ``group=name`` (the reference our preset must
    agree with)."""
    if group == "hydra/launcher" and name == "joblib":
        from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf as conf
    elif group == "hydra/launcher" and name == "submitit_local":
        from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf as conf
    elif group == "hydra/launcher" and name == "submitit_slurm":
        from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf as conf
    elif group == "hydra/sweeper" and name == "optuna":
        from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf as conf
    else:
        raise AssertionError(f"no reference schema for {group}={name}: add it to this test")
    return {f.name for f in dataclasses.fields(conf)} - {"_target_", "defaults"}


# extra keys our presets add to the plugin's (read by hydra_plugins/rnnlab_plugins.py)
OUR_KEYS = {"joblib": {"gpu_memory_fraction", "preallocate"},
            "submitit_local": {"gpu_memory_fraction", "preallocate"},
            "submitit_slurm": set(), "optuna": set()}


def _need(group, name):
    if not launchers.plugin_installed(group, name):
        pytest.skip(f"{launchers.PLUGINS[(group, name)][1]} is not installed "
                    f"(pip install \"rnnlab[{launchers.EXTRA}]\")")


OWN = {"packed"}  # rnnlab's own launchers (no plugin to install; tests/test_packing.py)


@pytest.mark.parametrize("group, name", [("hydra/launcher", n) for n in LAUNCHERS
                                         if n not in OWN]
                         + [("hydra/sweeper", n) for n in SWEEPERS])
def test_every_preset_composes_with_its_plugins_keys(group, name):
    _need(group, name)
    assert (group, name) in launchers.PLUGINS, f"{group}={name} has no entry in PLUGINS"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = _compose([f"{group}={name}", "hydra.sweep.dir=sweep"])
    assert not [w for w in caught if "schema" in str(w.message)], [str(w.message)
                                                                  for w in caught]
    node = cfg.hydra[launchers.GROUPS[group]]
    keys = set(node.keys()) - {"_target_"}
    assert keys == _plugin_schema(group, name) | OUR_KEYS[name]
    # the target is a class Hydra accepts as a plugin (it must live in hydra_plugins)
    module, _, cls = node._target_.rpartition(".")
    assert module.startswith("hydra_plugins.")
    __import__(module)
    assert isinstance(getattr(sys.modules[module], cls), type)
    OmegaConf.to_container(node, resolve=True)  # every interpolation resolves


def test_the_basic_launcher_and_sweeper_remain():
    assert _compose([]).hydra.launcher._target_.endswith("BasicLauncher")
    assert "basic" in launchers.options("hydra/launcher")
    assert "basic" in launchers.options("hydra/sweeper")


def test_optuna_preset_searches_learning_rate_width_and_dropout():
    _need("hydra/sweeper", "optuna")
    sweeper = _compose(["hydra/sweeper=optuna"]).hydra.sweeper
    assert set(sweeper.params) == {"optim.learning_rate", "cell.hidden_size", "model.dropout"}
    assert sweeper.direction == "auto" and sweeper.sampler._target_.endswith("TPESampler")
    # n_jobs follows the joblib launcher's, 1 with launchers that have none
    assert _compose(["hydra/sweeper=optuna"]).hydra.sweeper.n_jobs == 1
    if launchers.plugin_installed("hydra/launcher", "joblib"):
        cfg = _compose(["hydra/sweeper=optuna", "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=3"])
        assert cfg.hydra.sweeper.n_jobs == 3


@pytest.mark.parametrize("task, direction", [
    ("copy", "maximize"),  # recall accuracy (README's task table)
    ("adding", "minimize"),  # MSE
    ("temporal_order", "maximize"),  # accuracy
])
def test_optuna_direction_follows_the_task(task, direction):
    assert launchers.task_direction(task) == direction


def test_best_job_is_the_best_finished_one_in_the_tasks_direction():
    rows = [{"job": "0", "status": "ok", "mean": 0.5}, {"job": "1", "status": "failed",
                                                         "mean": float("nan")},
            {"job": "2", "status": "ok", "mean": 0.7}, {"job": "3", "status": "diverged",
                                                        "mean": 0.9},
            {"job": "4", "status": "ok", "mean": float("nan")}]
    assert launchers.best_job(rows, "maximize")["job"] == "2"
    assert launchers.best_job(rows, "minimize")["job"] == "0"
    assert launchers.best_job(rows[1:2], "maximize") is None


@pytest.mark.parametrize("concurrent, fraction, expected", [
    (1, None, "0.9"), (2, None, "0.45"), (3, None, "0.3"), (4, None, "0.225"),
    (7, None, "0.128"),  # 0.9 / 7 = 0.12857..., rounded down so 7 jobs stay under 0.9
    (5, 0.3, "0.3"),
])
def test_jax_memory_env_splits_the_gpu(concurrent, fraction, expected):
    env = launchers.jax_memory_env(concurrent, fraction)
    assert env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                   "XLA_PYTHON_CLIENT_MEM_FRACTION": expected}
    assert concurrent * float(expected) <= 0.9 or fraction is not None


@pytest.mark.parametrize("concurrent, fraction, match", [
    (0, None, "jobs at once must be an int >= 1; got 0"),
    (2, 0.0, r"gpu_memory_fraction must be in \(0, 1\] or null; got 0.0"),
    (2, 1.5, "got 1.5"),
    (2, "half", "got 'half'"),
    (2, True, "got True"),
])
def test_jax_memory_env_refuses_bad_values(concurrent, fraction, match):
    with pytest.raises(ValueError, match=match):
        launchers.jax_memory_env(concurrent, fraction)


def test_slurm_preset_writes_the_requested_resources(tmp_path, monkeypatch):
    """The sbatch script submitit would submit, made without a cluster: the plugin's own
    launch() maps the preset to submitit's parameters, and the submission is intercepted."""
    _need("hydra/launcher", "submitit_slurm")
    import submitit.slurm.slurm as slurm
    from hydra.utils import instantiate

    cfg = _compose(["hydra/launcher=submitit_slurm", f"hydra.sweep.dir={tmp_path}/sweep",
                    "hydra.launcher.partition=gpu-long", "hydra.launcher.gpus_per_task=2",
                    "hydra.launcher.cpus_per_task=6", "hydra.launcher.mem_gb=48",
                    "hydra.launcher.timeout_min=90", "hydra.launcher.array_parallelism=3",
                    "+hydra.launcher.additional_parameters.account=proj42",
                    "+hydra.launcher.additional_parameters.mail-type=END"])

    class Submitted(Exception):
        pass

    def capture(self, command):
        raise Submitted(self._make_submission_file_text(command, "uid"))

    monkeypatch.setattr(slurm.SlurmExecutor, "_submit_command", capture)
    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    with pytest.raises(Submitted) as sent:
        launcher.launch([[f"cell={c}"] for c in ("lstm", "gru", "rnn", "peephole", "lstm")],
                        initial_job_idx=0)
    sbatch = {line for line in str(sent.value).splitlines() if line.startswith("#SBATCH")}
    for option in ("--partition=gpu-long", "--gpus-per-task=2", "--cpus-per-task=6",
                   "--mem=48GB", "--time=90", "--array=0-4%3", "--account=proj42",
                   "--mail-type=END", "--ntasks-per-node=1", "--nodes=1"):
        assert f"#SBATCH {option}" in sbatch, (option, sorted(sbatch))
    assert (tmp_path / "sweep" / ".submitit").is_dir()


# ---- refusals on the command line ---------------------------------------------------------------
# Runs command lines through rnnlab.run.main in one Python process, with some modules made
# unimportable (as if their plugin were not installed), and prints what each did as JSON.
PRELUDE = r"""
import importlib.abc
BLOCKED = EXTRA
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Blocker())
import pkgutil  # Hydra's plugin scan walks the hydra_plugins folders itself
_walk = pkgutil.walk_packages
def walk(*args, **kwargs):
    for info in _walk(*args, **kwargs):
        if not any(info.name == b or info.name.startswith(b + ".") for b in BLOCKED):
            yield info
pkgutil.walk_packages = walk
"""


def run_blocked(cases, blocked):
    return run_command_lines(cases, prelude=PRELUDE, extra=blocked)


def _assert_one_line(result, fragments):
    assert result["code"] == 2, result
    lines = [line for line in result["err"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("[rnnlab] error: "), result["err"]
    assert "Traceback" not in result["err"] + result["out"]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result["left"] == [], result["left"]


MISSING = [  # (arguments, fragments of the message), run with no plugin importable
    (["-m", "hydra/launcher=joblib", "cell=lstm,gru"],
     ["hydra/launcher=joblib", "hydra-joblib-launcher", 'pip install "rnnlab[cluster]"']),
    (["-m", "hydra/launcher=submitit_slurm"],
     ["hydra/launcher=submitit_slurm", "hydra-submitit-launcher", "rnnlab[cluster]"]),
    (["-m", "hydra/launcher=submitit_local"],
     ["hydra/launcher=submitit_local", "hydra-submitit-launcher", "rnnlab[cluster]"]),
    (["-m", "hydra/sweeper=optuna"],
     ["hydra/sweeper=optuna", "hydra-optuna-sweeper", "rnnlab[cluster]"]),
    (["-m", "+hydra/sweeper=optuna"], ["hydra/sweeper=optuna", "hydra-optuna-sweeper"]),
    (["-m", "hydra/launcher=jobllib"], ["hydra/launcher=jobllib", "no such launcher",
                                        "basic, joblib, packed, submitit_local, "
                                        "submitit_slurm"]),
    (["train.steps=0"], ["train.steps", "got 0"]),  # bad values are refused as before
]


@pytest.fixture(scope="module")
def without_plugins(tmp_path_factory):
    """Each command line of MISSING, and ``--cfg job``, with no plugin importable."""
    blocked = sorted({module for module, _ in launchers.PLUGINS.values()})
    cases = [(args, tmp_path_factory.mktemp("case")) for args, _ in MISSING]
    cases.append((["--cfg", "job", "cell=gru"], tmp_path_factory.mktemp("case")))
    return run_blocked(cases, blocked)


@pytest.mark.parametrize("i", range(len(MISSING)), ids=[" ".join(a) for a, _ in MISSING])
def test_a_missing_plugin_names_the_extra_to_install(i, without_plugins):
    _assert_one_line(without_plugins[i], MISSING[i][1])


def test_the_plugins_really_are_optional(without_plugins):
    """With no plugin importable, rnnlab still composes and runs its commands."""
    shown = without_plugins[-1]
    assert shown["code"] == 0 and "name: gru" in shown["out"], shown


BAD_SETTINGS = [  # (plugin preset, arguments, fragments of the message)
    (("hydra/launcher", "joblib"), ["hydra.launcher.n_jobs=0"],
     ["hydra.launcher.n_jobs", ">= 1, or -1", "got 0"]),
    (("hydra/launcher", "joblib"), ["hydra.launcher.n_jobs=two"],
     ["hydra.launcher.n_jobs", "got 'two'"]),
    (("hydra/launcher", "joblib"), ["hydra.launcher.gpu_memory_fraction=2"],
     ["hydra.launcher.gpu_memory_fraction", "(0, 1] or null", "got 2"]),
    (("hydra/launcher", "submitit_local"), ["hydra.launcher.preallocate=maybe"],
     ["hydra.launcher.preallocate", "true or false", "got 'maybe'"]),
    (("hydra/sweeper", "optuna"), ["hydra.sweeper.direction=up"],
     ["hydra.sweeper.direction", "auto, minimize, maximize", "got 'up'"]),
    (("hydra/sweeper", "optuna"), ["hydra.sweeper.n_trials=0"],
     ["hydra.sweeper.n_trials", ">= 1", "got 0"]),
    (("hydra/sweeper", "optuna"), ["task=choice(copy,adding)"],
     ["cannot sweep task", "task=choice(copy,adding)", "one study per task"]),
    (("hydra/sweeper", "optuna"), ["cell=choice(lstm,lstn)"],
     ["cell=lstn: no such cell", "did you mean cell=lstm?", "Options: cifg, gru"]),
]


# -m cell=lstm,lstn with each launcher: refused before the sweep starts
NOT_COMPOSING = ["basic", "joblib", "submitit_local", "packed"]


@pytest.fixture(scope="module")
def bad_settings(tmp_path_factory):
    cases = [(["-m", f"{group}={name}", *args], tmp_path_factory.mktemp("case"))
             for (group, name), args, _ in BAD_SETTINGS]
    cases += [(["-m", f"hydra/launcher={name}", "cell=lstm,lstn", "hydra.sweep.dir=sweep"],
               tmp_path_factory.mktemp("case")) for name in NOT_COMPOSING]
    return run_blocked(cases, [])


@pytest.mark.parametrize("i", range(len(BAD_SETTINGS)),
                         ids=[" ".join(a) for _, a, _ in BAD_SETTINGS])
def test_bad_launcher_and_sweeper_settings_are_refused_before_any_job(i, bad_settings):
    _need(*BAD_SETTINGS[i][0])
    _assert_one_line(bad_settings[i], BAD_SETTINGS[i][2])


@pytest.mark.parametrize("i, name", list(enumerate(NOT_COMPOSING)), ids=NOT_COMPOSING)
def test_a_choice_that_does_not_exist_stops_the_sweep_before_any_job(i, name, bad_settings):
    """What the README states: -m cell=lstm,lstn is refused in one line naming the cells,
    status 2, with every launcher, before the sweep folder is made (Hydra composed every
    job first and failed with its many-line message and status 1, leaving multirun.yaml)."""
    _need("hydra/launcher", name)
    _assert_one_line(bad_settings[len(BAD_SETTINGS) + i],
                     ["cell=lstn: no such cell", "did you mean cell=lstm?", "gru"])


# ---- real sweeps (slow) -------------------------------------------------------------------------
def _sweep(args, sweep_dir, cwd):
    env = {**os.environ, "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "rnnlab.run", "-m", *args, *TINY,
                             f"hydra.sweep.dir={sweep_dir}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def three_launchers(tmp_path_factory):
    """One 2-job sweep (job 0 trains, job 1 has a bad value) with each launcher, started
    together."""
    root = tmp_path_factory.mktemp("launchers")
    names = ["basic", *[n for n in ("joblib", "submitit_local")
                        if launchers.plugin_installed("hydra/launcher", n)]]
    extra = {"joblib": ["hydra.launcher.n_jobs=2"]}
    procs = {n: _sweep([f"hydra/launcher={n}", *extra.get(n, []), "task.length=2,0"],
                       root / n, root) for n in names}
    return root, {n: (p, *p.communicate(timeout=900)) for n, p in procs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["joblib", "submitit_local"])
def test_launcher_writes_the_same_run_folders_as_the_basic_one(name, three_launchers):
    _need("hydra/launcher", name)
    root, done = three_launchers
    for launcher in ("basic", name):
        proc, out, err = done[launcher]
        assert proc.returncode == 1, (launcher, out, err)  # job 1 failed
        assert "1_copy_lstm FAILED: ConfigError: copy task: length must be an int >= 1; " \
               "got 0" in err, (launcher, err)
    basic, other = root / "basic", root / name
    for job in ("0_copy_lstm", "1_copy_lstm"):
        a = json.loads((basic / job / "summary.json").read_text())
        b = json.loads((other / job / "summary.json").read_text())
        assert a["status"] == b["status"] and a.get("error") == b.get("error")
        assert a.get("final") == b.get("final")  # same seeds, same program: same numbers
    ma = pd.read_json(basic / "0_copy_lstm" / "metrics.jsonl", lines=True)
    mb = pd.read_json(other / "0_copy_lstm" / "metrics.jsonl", lines=True)
    assert list(ma.columns) == list(mb.columns) and len(ma) == len(mb) > 0
    pd.testing.assert_frame_equal(ma.drop(columns=["time"], errors="ignore"),
                                  mb.drop(columns=["time"], errors="ignore"))
    sa = pd.read_csv(basic / "sweep.csv").drop(columns=["run_dir"])
    sb = pd.read_csv(other / "sweep.csv").drop(columns=["run_dir"])
    pd.testing.assert_frame_equal(sa, sb)
    assert list(sb.status) == ["ok", "failed"]
    # the jobs ran with JAX's GPU-sharing settings (recorded, and applied by Hydra in the job)
    env = OmegaConf.load(other / "0_copy_lstm" / ".hydra" / "hydra.yaml").hydra.job.env_set
    assert env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                   "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45"}  # 0.9 / 2 jobs at once


@pytest.mark.slow
def test_optuna_study_survives_a_failed_trial_and_records_the_best(tmp_path):
    """Two grid trials, one with a refused learning rate: the study goes on, best.yaml names
    the finished trial (the task's direction: copy maximises accuracy), the sweep exits 1."""
    _need("hydra/sweeper", "optuna")
    proc = _sweep(["hydra/sweeper=optuna", "hydra/sweeper/sampler=grid",
                   "optim.learning_rate=choice(0.01,-1.0)", "model.dropout=0",
                   "task.length=2"], tmp_path / "sweep", tmp_path)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, (out, err)
    sweep = tmp_path / "sweep"
    table = pd.read_csv(sweep / "sweep.csv")
    assert sorted(table.status) == ["failed", "ok"]
    ok = table[table.status == "ok"].iloc[0]
    summary = json.loads((Path(ok.run_dir) / "summary.json").read_text())
    best = OmegaConf.load(sweep / "best.yaml")
    assert best.metric == "accuracy" and best.direction == "maximize"
    assert best.job == ok.job and best.value == pytest.approx(
        summary["final"]["accuracy"]["mean"])
    assert "optim.learning_rate=0.01" in best.overrides
    assert best.config.optim.learning_rate == 0.01 and best.config.model.dropout == 0
    assert "Traceback" not in err


def test_optuna_study_where_every_trial_fails_ends_cleanly(tmp_path):
    """No trial finishes (every learning rate is refused; nothing compiles): no traceback,
    best.yaml says so, every trial is in sweep.csv, and the sweep exits with status 1."""
    _need("hydra/sweeper", "optuna")
    env = {**os.environ, "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", "-m", "hydra/sweeper=optuna",
                           "hydra/sweeper/sampler=random", "hydra.sweeper.n_trials=2",
                           "optim.learning_rate=choice(-1.0,-2.0)", "cell.hidden_size=8",
                           "model.dropout=0", "logger.wandb.mode=disabled",
                           f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    best = OmegaConf.load(tmp_path / "sweep" / "best.yaml")
    assert best.value is None and best.job is None and best.direction == "maximize"
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(table.status) == ["failed", "failed"]
    assert all("optim.learning_rate must be a finite number > 0.0" in e for e in table.error)


# ---- a job whose process dies -------------------------------------------------------------------
DYING_CELL = '''
import dataclasses
import os
import signal

from rnnlab.cells.rnn import SimpleRNN


@dataclasses.dataclass(frozen=True)
class DyingRNN(SimpleRNN):
    """A tanh RNN whose init kills its own process, as the out-of-memory killer would."""

    die: bool = False

    def init(self, key, input_size):
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().init(key, input_size)
'''


@pytest.mark.parametrize("name", ["joblib", pytest.param("submitit_local",
                                                            marks=pytest.mark.slow)])
def test_a_job_whose_process_dies_is_recorded_and_the_others_finish(name, tmp_path):
    """Job 0's process is killed (SIGKILL) while job 1 runs beside it: the sweep does not stop
    with the plugin's error; job 0 is failed with WorkerDied in its summary and sweep.csv (and
    a rerun of the sweep would retry it), job 1 trains to the end (with joblib: again, alone,
    after the pool that job 0 broke), the command exits 1 without a traceback."""
    from rnnlab import jobs

    _need("hydra/launcher", name)
    (tmp_path / "dying_cell.py").write_text(DYING_CELL)
    env = {**os.environ, "WANDB_SILENT": "true",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("HYDRA_FULL_ERROR", None)
    extra = ["hydra.launcher.n_jobs=2"] if name == "joblib" else []
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", "-m", f"hydra/launcher={name}",
                           *extra, "cell=dying_cell.DyingRNN", "cell.die=true,false", *TINY,
                           "gradients.enabled=false", f"hydra.sweep.dir={sweep}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    table = pd.read_csv(sweep / "sweep.csv")
    assert list(table.status) == ["failed", "ok"], table
    assert table.error[0].startswith("WorkerDied: its process "), table.error[0]
    assert list(table.metric) == ["accuracy", "accuracy"]  # the copy task's, the dead job's too
    dead, alive = (Path(d) for d in table.run_dir)
    assert json.loads((dead / "summary.json").read_text())["status"] == "failed"
    assert not jobs.finished(dead)  # rerunning the sweep runs it again
    assert json.loads((alive / "summary.json").read_text())["status"] == "ok"
    assert len(pd.read_json(alive / "metrics.jsonl", lines=True)) > 0
    assert "[rnnlab] job 0 (cell=dying_cell.DyingRNN cell.die=True" in proc.stderr
    assert "FAILED: WorkerDied" in proc.stderr
