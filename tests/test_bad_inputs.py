"""The catalogue of bad inputs: each is refused before anything is compiled or written, with one
message naming the field, the value and what is accepted.

On the command line (``python -m rnnlab.run``, driven in-process through the same ``main``):
exit status 2, the message alone on stderr (no traceback), no run folder left. In Python: a
``ConfigError``/``ValueError``/``TypeError`` with the same message."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_driver import run_command_lines
from rnnlab.cells import LSTM, PeepholeLSTM, make_cell
from rnnlab.checks import ConfigError
from rnnlab.config import compose
from rnnlab.loop import build
from rnnlab.recurrent import Recurrent, RecurrentStack, scan_driver

# (overrides, fragments that must all appear in the message)
CLI_CASES = [
    (["cell=gru", "cell.bias_init=orthogonal"], ["cell.bias_init", "'orthogonal'", "'zeros'"]),
    (["cell.bias_init=glorot_uniform"], ["cell.bias_init", "'glorot_uniform'", "'ones'"]),
    (["cell=gru", "cell.bias_init=lecun_normal"], ["cell.bias_init", "'lecun_normal'"]),
    (["cell=rnn", "cell.bias_init=he_normal"], ["cell.bias_init", "'he_normal'"]),
    (["cell=peephole", "cell.bias_init=identity"], ["cell.bias_init", "'identity'"]),
    (["cell.kernel_init=xavier"], ["cell.kernel_init", "'xavier'", "glorot_uniform"]),
    (["cell.activation=swish"], ["cell.activation", "'swish'", "tanh"]),
    (["cell.hidden_size=0"], ["cell.hidden_size", "0"]),
    # the state alone outgrows the machine: refused from shapes, before anything is allocated
    # (4(H(10 + H) + H) + 9H + 9 parameters by hand)
    (["cell.hidden_size=100000"], ["too large for this machine", "widths [100000]",
                                   "40,005,300,009 parameters", "cell.hidden_size",
                                   "train.num_seeds"]),
    (["cell.dtype=float64"], ["cell.dtype=float64", "JAX_ENABLE_X64", "float32"]),
    (["cell.dtype=float8"], ["cell.dtype", "'float8'", "bfloat16"]),
    (["train.eval_batch_size=0"], ["train.eval_batch_size", ">= 1", "got 0"]),
    (["optim.learning_rate=-1"], ["optim.learning_rate", "> 0", "got -1"]),
    (["optim.learning_rate=0"], ["optim.learning_rate", "> 0", "got 0"]),
    (["optim.schedule=warmup_cosine", "optim.warmup_steps=-5"], ["optim.warmup_steps",
                                                                  ">= 0", "got -5"]),
    (["optim.final_lr_fraction=2"], ["optim.final_lr_fraction", "[0.0, 1.0]", "got 2"]),
    (["train.early_stopping_patience=0"], ["train.early_stopping_patience", ">= 1", "got 0"]),
    (["train.early_stopping_patience=-1"], ["train.early_stopping_patience", "got -1"]),
    (["model.unroll=0"], ["model.unroll", ">= 1", "got 0"]),
    (["model.bptt=manual"], ["model.bptt", "'manual'", "fused"]),
    (["cell=mgu", "model.bptt=fused"], ["model.bptt=fused", "cell=mgu", "autodiff"]),
    (["cell=gru", "cell.reset_after=false", "model.bptt=fused"], ["model.bptt=fused",
                                                                   "cell=gru"]),
    (["gradients.batch_size=0"], ["gradients.batch_size", ">= 1", "got 0"]),
    (["gradients.every=-100"], ["gradients.every", ">= 0", "got -100"]),
    (["train.log_every=5000"], ["train.log_every", "train.steps=2", "got 5000"]),
    (["train.steps=0"], ["train.steps", ">= 1", "got 0"]),
    (["train.num_seeds=0"], ["train.num_seeds", ">= 1", "got 0"]),
    (["train.steps=1000", "train.log_every=300"], ["train.steps=1000", "multiple",
                                                 "train.log_every=300"]),
    (["train.steps=1000", "train.log_every=100", "gradients.every=150"],
     ["gradients.every=150", "multiple", "train.log_every=100"]),
    (["train.checkpoint_every=3"], ["train.checkpoint_every=3", "multiple",
                                    "train.log_every=2"]),
    (["train.checkpoint_every=-2"], ["train.checkpoint_every", ">= 0", "got -2"]),
    (["train.checkpoint_keep=0"], ["train.checkpoint_keep", ">= 1", "got 0"]),
    # one CPU device per core (rnnlab's default), the same count in the CLI's processes
    (["train.devices=99"], ["train.devices", f"<= {jax.local_device_count()}",
                            f"local devices: {jax.local_device_count()}", "got 99"]),
    (["train.compilation_cache=/proc/forbidden"], ["train.compilation_cache",
                                                    "/proc/forbidden", "null"]),
    (["cell.forget_bias=nan"], ["cell.forget_bias", "finite", "nan"]),
    (["logger.wandb.init_timeout=0"], ["logger.wandb.init_timeout", "> 0", "got 0"]),
    (["model.parallel=true"], ["model.parallel=true", "parallel mode", "cell=lstm"]),
    (["train.divergence_factor=0.5"], ["train.divergence_factor", "> 1.0", "got 0.5"]),
    (["train.seed=-1"], ["train.seed", ">= 0", "got -1"]),
    (["model.dropout=1.0"], ["model.dropout", "[0.0, 1.0)", "got 1.0"]),
    (["model.merge=mean"], ["model.merge", "'mean'", "concat"]),
    (["model.projection=gpu"], ["model.projection", "'gpu'", "hoisted"]),
    (["model.head_activation=swish"], ["model.head_activation", "'swish'", "relu"]),
    (["model.hidden_sizes=[64,0]"], ["model.hidden_sizes[1]", ">= 1", "got 0"]),
    (["model.num_layers=0"], ["model.num_layers", ">= 1", "got 0"]),
    (["model.num_layers=3", "model.hidden_sizes=[8,8]"], ["model.num_layers=3",
                                                          "model.hidden_sizes"]),
    (["model.param_budget=10"], ["model.param_budget=10", "smallest model"]),
    (["optim.grad_clip=0"], ["optim.grad_clip", "> 0", "or null", "got 0"]),
    (["optim.name=adagrad"], ["optim.name", "'adagrad'", "adam"]),
    (["optim.schedule=step"], ["optim.schedule", "'step'", "cosine"]),
    (["optim.eps=0"], ["optim.eps", "> 0", "got 0"]),
    (["optim=sgd", "optim.momentum=1.5"], ["optim.momentum", "[0.0, 1.0)", "got 1.5"]),
    # values the chosen optimizer or schedule never reads (they would change nothing)
    (["optim.weight_decay=0.1"], ["optim.weight_decay=0.1 has no effect with optim.name=adam",
                                  "optim=adamw"]),
    (["optim=adamw", "optim.schedule=constant", "optim.warmup_steps=1"],
     ["optim.warmup_steps=1 has no effect with optim.schedule=constant", "warmup_cosine"]),
    (["optim=sgd", "optim.eps=1e-3"], ["optim.eps=0.001 has no effect with optim.name=sgd"]),
    (["logger.wandb.mode=onlin"], ["logger.wandb.mode", "'onlin'", "offline"]),
    (["task.length=0"], ["copy task", "length", "got 0"]),
    (["task=adding", "task.length=1"], ["adding task", "length", "got 1"]),
    (["task=temporal_order", "task.num_relevant=4"], ["num_relevant", "4"]),
    # launchers and sweepers (plugin presets whose plugin is missing: tests/test_launchers.py)
    (["-m", "hydra/launcher=jobllib"], ["hydra/launcher=jobllib", "no such launcher",
                                        "joblib", "submitit_slurm"]),
    (["-m", "hydra/sweeper=optuna_tpe"], ["hydra/sweeper=optuna_tpe", "no such sweeper",
                                          "optuna"]),
    # Hydra's modes, one per call (Hydra itself raised a bare ValueError)
    (["-m", "--cfg", "job", "cell=lstm,gru"], ["--multirun and --cfg", "cannot be combined",
                                               "--cfg job cell=lstm"]),
    (["--info", "--cfg=hydra"], ["--info and --cfg", "cannot be combined"]),
    # a key added with + to rnnlab's own sections, or beside them, is refused like a set one
    # (Hydra took it silently and nothing read it: +train.stepz=20 trained the default steps)
    (["+train.stepz=20"], ["train.stepz: no such key in train", "did you mean train.steps?"]),
    (["++optim.learning_rat=0.1"], ["optim.learning_rat", "did you mean optim.learning_rate?"]),
    (["+logger.wandb.projct=x"], ["logger.wandb.projct", "logger.wandb.project?"]),
    (["+foo=1"], ["+foo=1: the config has no section 'foo'", "+experiment=NAME"]),
    # a message ending in a quote keeps it (the refusal stripped quotes off every message)
    (["task=forecast", "task.val_start=1950-01-01", "task.test_start=1940-01-01"],
     ["test_start='1940-01-01' is before val_start='1950-01-01'"]),
    # a config group option that does not exist: one line naming the options (Hydra's own
    # message was 18 lines with its search path, status 1)
    (["task=forcast"], ["task=forcast: no such task", "did you mean task=forecast?"]),
    (["optim=adamm"], ["optim=adamm: no such optim", "Options: adam, adamw, rmsprop, sgd"]),
    (["+experiment=lstm_variant"], ["+experiment=lstm_variant: no such experiment",
                                    "did you mean +experiment=lstm_variants?"]),
    (["-m", "cell=lstm,lstn"], ["cell=lstn: no such cell", "cell=package.module.Class"]),
    # printing a config checks its values as a run would (it printed a config that cannot run)
    (["--cfg", "job", "train.steps=0"], ["train.steps must be an int >= 1; got 0",
                                         "--cfg job prints only configs that can run"]),
    (["--cfg=all", "optim.learning_rate=-1"], ["optim.learning_rate", "-1",
                                               "--cfg all prints only"]),
]

SMALL = ["train.steps=2", "train.log_every=2", "logger.progress=false",
         "logger.wandb.mode=disabled"]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    cases = [([*SMALL, *overrides], tmp_path_factory.mktemp("case"))
             for overrides, _ in CLI_CASES]
    return dict(zip((" ".join(o) for o, _ in CLI_CASES), run_command_lines(cases),
                    strict=True))


def assert_refused(result, fragments):
    code, out, err = result["code"], result["out"], result["err"]
    assert code == 2, f"exit status {code}; stderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("[rnnlab] error: "), err
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing from: {lines[0]}"
    assert result["left"] == [], f"left behind: {result['left']}"


@pytest.mark.parametrize("overrides, fragments", CLI_CASES,
                         ids=[" ".join(c[0]) for c in CLI_CASES])
def test_bad_value_on_the_command_line(overrides, fragments, cli_results):
    assert_refused(cli_results[" ".join(overrides)], fragments)


@pytest.mark.parametrize("overrides, fragments", CLI_CASES[:12],
                         ids=[" ".join(c[0]) for c in CLI_CASES[:12]])
def test_bad_value_through_the_python_api(overrides, fragments):
    with pytest.raises(ConfigError) as err:
        build(compose([*SMALL, *overrides]))
    for fragment in fragments:
        assert fragment in str(err.value)


def test_bad_csv_files_name_the_file_and_the_lookback(tmp_path):
    empty, short = tmp_path / "empty.csv", tmp_path / "short.csv"
    empty.write_text("")
    short.write_text("y\n1\n2\n3\n4\n5\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r_empty, r_short = run_command_lines([
        (["task=forecast", f"task.path={empty}", "task.target=y", *SMALL], tmp_path / "a"),
        (["task=forecast", f"task.path={short}", "task.target=y", "task.lookback=60", *SMALL],
         tmp_path / "b")])
    assert_refused(r_empty, [str(empty), "empty"])
    assert_refused(r_short, [str(short), "too short: 5 rows", "lookback=60"])


SCHEMA_REFUSALS = [
    (["cell.hidden_size=abc"], "cell.hidden_size=abc: not an int; cell.hidden_size takes a "
     "whole number"),
    (["train.steps=1e3"], "train.steps=1e3: not an int; write train.steps=1000"),
    (["cell.hidden_size=12.5"], "cell.hidden_size=12.5: not an int; cell.hidden_size takes a "
     "whole number"),
    (["optim.learning_rate=1e-3x"], "optim.learning_rate=1e-3x: not a number; "
     "optim.learning_rate takes a float (e.g. 1e-3)"),
    (["-m", "optim.learning_rate=1e-3,abc"], "optim.learning_rate=abc: not a number; "
     "optim.learning_rate takes a float (e.g. 1e-3)"),
    (["train.stepz=100"], "train.stepz: no such key in train; did you mean train.steps? "
     "Accepted: batch_size, checkpoint_every, checkpoint_keep, compilation_cache, devices, "
     "divergence_factor, early_stopping_patience, eval_batch_size, log_every, num_seeds, "
     "resume, seed, steps"),
    (["logger.wandb.mod=x"], "logger.wandb.mod: no such key in logger.wandb; did you mean "
     "logger.wandb.mode? Accepted: entity, group, init_timeout, mode, project, tags"),
    (["cell.hidden_sise=64", "--cfg", "job"], "cell.hidden_sise: no cell has the key "
     "'hidden_sise'; did you mean cell.hidden_size?"),
    # a key of another cell than the one chosen (Hydra: "Key 'reset_after' not in
    # 'LSTMConfig'", five lines, exit 1)
    (["cell=lstm", "cell.reset_after=false"], "cell.reset_after: cell 'lstm' has no option "
     "'reset_after'; accepted: activation, bias_init, dtype, forget_bias, hidden_size"),
    (["-m", "cell=gru,lstm", "cell.forget_bias=3"], "cell.forget_bias: cell 'gru' has no "
     "option 'forget_bias'"),
    # booleans and lists (OmegaConf turned 5 into true; Hydra's messages took six lines)
    (["model.bidirectional=5"], "model.bidirectional=5: not a boolean; write "
     "model.bidirectional=true or model.bidirectional=false"),
    (["-m", "logger.progress=true,maybe"], "logger.progress=maybe: not a boolean"),
    (["task=forecast", "task.features=Close"], "task.features=Close: task.features takes a "
     "list; write task.features=[Close]"),
    (["-m", "hydra.launcher=joblib"], "hydra.launcher=joblib: hydra.launcher is a config "
     "group; choose it with hydra/launcher=joblib (a slash)"),
    (["model.hidden_sizes=[8,16]", "cell.hidden_size=32"], "model.hidden_sizes=[8,16] gives "
     "every layer's width, so cell.hidden_size=32 would be ignored; give one of the two"),
    (["-m", "model.param_budget=2000", "cell.hidden_size=16,32"], "model.param_budget=2000 "
     "chooses the hidden widths, so cell.hidden_size=16,32 would be ignored; give one of the "
     "two"),
]


def test_schema_errors_are_one_line_before_anything_is_written(tmp_path):
    """Unknown keys and values of the wrong type, refused before Hydra composes (exit 2, one
    line naming the key, the value and what is accepted), through rnnlab.run's main."""
    cases = [(args, tmp_path / str(i)) for i, (args, _) in enumerate(SCHEMA_REFUSALS)]
    for _, folder in cases:
        folder.mkdir()
    for result, (_, message) in zip(run_command_lines(cases), SCHEMA_REFUSALS, strict=True):
        assert result["code"] == 2, result
        lines = result["err"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"[rnnlab] error: {message}"), lines
        assert result["left"] == [], result


def test_valid_overrides_pass_the_schema_check():
    from rnnlab.config import check_override_keys, check_width_overrides

    assert check_override_keys([
        "cell=gru", "cell.reset_after=true", "train.steps=100", "train.steps='100'",
        "optim.learning_rate=1e-3,3e-4", "optim.learning_rate=2", "train.seed=range(0,3)",
        "train.devices=null", "train.checkpoint_every=${train.log_every}", "+experiment=x",
        "++train.steps=5", "+cell.extra=1", "~train.seed", "hydra.run.dir=x", "--cfg", "job",
        "task=forecast",
        "task.lookback=3", "logger.wandb.tags=[a,b]", "optim.learning_rate=interval(0.1,1)",
        "model.hidden_sizes=[8,8]", "optim.grad_clip=null", "model.dropout=0.1",
        "hydra/launcher=packed", "-m"]) is None
    # a key some cell has passes when a preset or a config of one's own may choose that cell
    # (Hydra's composition decides); without either the cell is the default, lstm
    assert check_override_keys(["+experiment=x", "cell.recurrent_max=2"]) is None
    assert check_override_keys(["--config-name", "mine", "cell.recurrent_max=2"]) is None
    assert check_override_keys(["cell=indrnn", "cell.recurrent_max=2"]) is None
    assert check_override_keys(["cell.recurrent_max=2"]).startswith(
        "cell.recurrent_max: cell 'lstm' has no option 'recurrent_max'")
    assert check_width_overrides(["model.param_budget=null", "cell.hidden_size=16"]) is None
    assert check_width_overrides(["model.param_budget=2000", "cell=gru"]) is None


def test_real_process_exit_status_and_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", "cell=gru",
                           "cell.bias_init=orthogonal"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "[rnnlab] error: cell.bias_init='orthogonal' needs a matrix and cannot initialise a "
        "vector; accepted for cell.bias_init: ['ones', 'zeros']"]
    assert not any(tmp_path.iterdir())


# ---- the Python API ----------------------------------------------------------------------------
def _layer_inputs(T=4):
    return jnp.ones((2, T, 3), jnp.float32)


@pytest.mark.parametrize("build_bad, error, fragment", [
    (lambda: LSTM(hidden_size=True), ValueError, "cell.hidden_size must be a positive int"),
    (lambda: LSTM(hidden_size=4.0), ValueError, "cell.hidden_size"),
    (lambda: make_cell("gru", hidden_size=4, bias_init="orthogonal"), ValueError,
     "cell.bias_init='orthogonal'"),
    (lambda: PeepholeLSTM(hidden_size=4, dtype="float64"), ValueError, "JAX_ENABLE_X64"),
    (lambda: RecurrentStack(cells=()).init(jax.random.key(0), _layer_inputs()), ValueError,
     "at least one cell"),
    (lambda: Recurrent(LSTM(hidden_size=4)).init(jax.random.key(0), _layer_inputs(0)),
     ValueError, "T=0"),
    (lambda: Recurrent(LSTM(hidden_size=4), unroll=0).init(jax.random.key(0), _layer_inputs()),
     ValueError, "model.unroll"),
    (lambda: Recurrent(LSTM(hidden_size=4)).init(jax.random.key(0), _layer_inputs(),
                                                 jnp.asarray([-1, 2])), ValueError,
     "seq_lengths must lie in [0, T=4]; got values from -1 to 2"),
    (lambda: Recurrent(LSTM(hidden_size=4)).init(jax.random.key(0), _layer_inputs(),
                                                 np.asarray([5, 2])), ValueError,
     "seq_lengths must lie in [0, T=4]; got values from 2 to 5"),
    (lambda: Recurrent(LSTM(hidden_size=4)).init(jax.random.key(0), _layer_inputs(),
                                                 jnp.asarray([2.0, 1.5])), TypeError,
     "seq_lengths must be integers"),
    (lambda: scan_driver(LSTM(hidden_size=4).step, None, jnp.ones((2, 0, 16)), None),
     ValueError, "T=0"),
])
def test_bad_python_arguments(build_bad, error, fragment):
    with pytest.raises(error) as err:
        build_bad()
    assert fragment in str(err.value)


def test_busy_or_finished_run_folder_is_refused(tmp_path):
    from rnnlab.jobs import RunDirLock

    busy, finished = tmp_path / "busy", tmp_path / "finished"
    finished.mkdir()
    (finished / "summary.json").write_text('{"status": "ok"}')
    lock = RunDirLock(busy).acquire()  # a live run holds this folder
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        r_busy, r_finished = run_command_lines([
            ([*SMALL, f"hydra.run.dir={busy}"], tmp_path / "a"),
            ([*SMALL, f"hydra.run.dir={finished}"], tmp_path / "b")])
    finally:
        lock.release()
    assert_refused(r_busy, [str(busy), "in use by a live run", f"pid {os.getpid()}"])
    assert_refused(r_finished, [str(finished), "already holds a finished run"])
    assert sorted(p.name for p in busy.iterdir()) == [".rnnlab.lock"]
    assert sorted(p.name for p in finished.iterdir()) == ["summary.json"]


def test_a_refusal_that_starts_the_devices_prints_only_its_line(tmp_path):
    """Starting JAX's backends inside Hydra's logging printed JAX's INFO line about each
    accelerator plugin it could not start ("[HYDRA] Unable to initialize backend 'tpu'")."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "HYDRA_FULL_ERROR")}
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", "train.devices=0"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stdout == ""  # Hydra's logging writes to stdout
    assert re.fullmatch(r"\[rnnlab\] error: train\.devices must be an int >= 1 and <= (\d+) "
                        r"\(local devices: \1\); got 0", proc.stderr.strip()), proc.stderr
