"""make_train: seeds under vmap, a short run that learns, optimizers, schedules, config errors."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import config, train
from rnnlab.config import OptimConfig

# a tiny copy task (5 + 2·3 = 8 steps, 4 outputs), a small LSTM, two seeds
TINY = ["train.steps=4", "train.log_every=2", "cell.hidden_size=8", "task.length=2",
        "task.copy_length=3", "task.num_symbols=3", "train.num_seeds=2", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.enabled=false",
        "cell.recurrent_init=identity"]  # identity: no QR to compile in init


def as_numpy(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(as_numpy(u), as_numpy(v), rtol=rtol,
                                                         atol=atol), a, b)


def first_chunk_fn(trainer):
    """``key -> (initial state, state after one chunk, chunk metrics)``."""
    def first_chunk(key):
        state = trainer.init(key)
        return (state, *trainer.run_chunk(state))

    return first_chunk


def test_vmap_over_seeds_equals_separate_runs():
    cfg = config.compose(TINY)
    trainer = train.make_train(cfg)
    assert trainer.chunk_size == 2 and trainer.num_chunks == 2
    first_chunk = first_chunk_fn(trainer)
    keys = train.seed_keys(cfg)
    _, batched_state, batched_metrics = jax.jit(jax.vmap(first_chunk))(keys)
    single = jax.jit(first_chunk)
    for i, seed in enumerate(range(cfg.train.seed, cfg.train.seed + cfg.train.num_seeds)):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(jax.random.key_data(keys[i]), jax.random.key_data(key))
        _, state, metrics = single(key)
        member = jax.tree.map(lambda v, i=i: v[i], (batched_state, batched_metrics))
        assert_trees_close(member, (state, metrics))
        assert int(state.step) == 2
    # the seeds really differ (the input kernels are drawn from each seed's key)
    gaps = [np.abs(np.asarray(p[0]) - np.asarray(p[1])).max()
            for p in jax.tree.leaves(batched_state.params)]
    assert max(gaps) > 1e-1


def test_short_copy_run_reduces_the_loss():
    overrides = [o for o in TINY if not o.startswith(("train.steps", "train.log_every"))]
    cfg = config.compose([*overrides, "train.steps=40", "train.log_every=20",
                          "train.batch_size=8", "optim.learning_rate=0.05"])
    trainer = train.make_train(cfg)
    initial_state, state, metrics = jax.jit(first_chunk_fn(trainer))(jax.random.key(0))
    evaluate = jax.jit(trainer.evaluate)  # the same held-out batch before and after
    before, after = float(evaluate(initial_state)["loss"]), float(evaluate(state)["loss"])
    # an untrained model is close to uniform over the 4 outputs (blank + 3 symbols)
    assert before == pytest.approx(math.log(trainer.task.output_size), rel=0.1)
    assert after < 0.75 * before, (before, after)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) < before


# ---- optimizers: the first update, by hand (gradient norm 0.5, under the clip of 1) ----------
P = np.array([1.0, -2.0], np.float32)
G = np.array([0.3, -0.4], np.float32)


def first_update(optim, grads=G):
    tx, _ = train.build_optimizer(optim, total_steps=10)
    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(jnp.asarray(P))
        updates, _ = jax.jit(tx.update)(jnp.asarray(grads), state, jnp.asarray(P))
    return np.asarray(updates, np.float64)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sgd"])
def test_registered_optimizers_first_update(name):
    assert name in train.OPTIMIZERS
    overrides = [f"optim={name}", "optim.schedule=constant"]
    if name == "adamw":
        overrides.append("optim.weight_decay=0.1")
    optim = config.compose(overrides).optim
    lr, g, p = optim.learning_rate, G.astype(np.float64), P.astype(np.float64)
    expected = {
        "adam": -lr * g / (np.abs(g) + optim.eps),  # bias-corrected m/sqrt(v) = g/|g|
        "adamw": -lr * (g / (np.abs(g) + optim.eps) + 0.1 * p),  # decoupled decay
        "rmsprop": -lr * g / np.sqrt((1 - optim.decay) * g * g),  # nu = (1 - rho) g^2
        "sgd": -lr * g,  # momentum buffer starts at zero
    }[name]
    np.testing.assert_allclose(first_update(optim), expected, rtol=1e-4)


@pytest.mark.parametrize("overrides", [
    ["optim=adamw", "optim.schedule=constant"],  # the preset's own warm-up stays, unread
    ["optim=rmsprop", "optim.momentum=0.5"], ["optim=sgd", "optim.momentum=0"],
    ["optim.schedule=cosine", "optim.final_lr_fraction=0.1"],
    ["optim=adamw", "optim.weight_decay=0.3"], ["optim=adam", "optim.eps=1e-8"],
])
def test_optimizer_values_that_are_read_pass(overrides):
    train.check_optim_fields_used(config.compose(overrides).optim)


def test_warm_up_steps_bound_the_run_only_when_the_schedule_warms_up():
    short = ["optim=adamw", "train.steps=50", "train.log_every=10"]  # adamw's preset: 100
    train.validate(config.compose([*short, "optim.schedule=constant"]))
    with pytest.raises(train.ConfigError, match=r"optim.warmup_steps .*<= 49.*got 100"):
        train.validate(config.compose(short))


@pytest.mark.parametrize("overrides, field", [
    (["optim.weight_decay=0.1"], "weight_decay"), (["optim.momentum=0.9"], "momentum"),
    (["optim=adamw", "optim.decay=0.5"], "decay"),
    (["optim.final_lr_fraction=0.1"], "final_lr_fraction"),
])
def test_optimizer_values_nothing_reads_are_refused(overrides, field):
    """Refused because the optimizer they build is the one without them (checked here)."""
    optim = config.compose(overrides).optim
    with pytest.raises(train.ConfigError, match=f"optim.{field}=.* has no effect"):
        train.check_optim_fields_used(optim)
    plain = config.compose([o for o in overrides if not o.startswith(f"optim.{field}=")]).optim
    np.testing.assert_array_equal(first_update(optim), first_update(plain))


def test_gradient_clipping_and_no_clipping():
    optim = OptimConfig(name="sgd", learning_rate=0.1, momentum=0.0, grad_clip=1.0)
    big = 10.0 * G  # norm 5
    np.testing.assert_allclose(first_update(optim, big), -0.1 * big / 5.0, rtol=1e-6)
    unclipped = dataclasses.replace(optim, grad_clip=None)
    np.testing.assert_allclose(first_update(unclipped, big), -0.1 * big, rtol=1e-6)


@pytest.mark.parametrize(("schedule", "expected"), [
    # lr 0.1, final fraction 0.1 (end 0.01), 10 steps, 2 warm-up steps
    ("constant", {0: 0.1, 5: 0.1, 10: 0.1}),
    ("cosine", {0: 0.1, 5: 0.01 + 0.09 * 0.5, 10: 0.01}),  # halfway: cos(pi/2) = 0
    ("linear", {0: 0.1, 5: 0.055, 10: 0.01}),
    ("warmup_cosine", {0: 0.0, 1: 0.05, 2: 0.1, 6: 0.01 + 0.09 * 0.5, 10: 0.01}),
])
def test_schedules(schedule, expected):
    assert schedule in train.SCHEDULES
    optim = OptimConfig(learning_rate=0.1, schedule=schedule, final_lr_fraction=0.1,
                        warmup_steps=2)
    _, fn = train.build_optimizer(optim, total_steps=10)
    with jax.numpy_dtype_promotion("standard"):
        got = {step: float(fn(step)) for step in expected}
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-8)


# ---- bad config values ------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "match"), [
    (["train.steps=5", "train.log_every=2"],
     r"train.steps=5 must be a multiple of train.log_every=2"),
    (["optim.name=adamax"], r"optim.name='adamax' is not accepted; use one of \[.*'adam'"),
    (["optim.schedule=exponential"], r"optim.schedule='exponential' is not accepted"),
    (["optim.grad_clip=0"], r"optim.grad_clip must be a finite number > 0.0, or null; got 0"),
    (["train.num_seeds=0"], r"train.num_seeds must be an int >= 1; got 0"),
])
def test_bad_config_values_raise(overrides, match):
    cfg = config.compose(["gradients.enabled=false", *overrides])
    with pytest.raises(ValueError, match=match):
        train.make_train(cfg)


def test_gradient_measurements_must_fall_on_chunk_boundaries():
    cfg = config.compose(["train.steps=8", "train.log_every=4", "gradients.every=6"])
    with pytest.raises(ValueError, match=r"gradients.every=6 must be a multiple of "
                                         r"train.log_every=4"):
        train.make_train(cfg)


def test_an_early_stopped_run_measures_gradients_at_its_last_step(tmp_path):
    """gradients.every=0 measures at initialisation and at the end; a run that stops early
    (a learning rate too small to change the held-out loss: no improvement in two
    evaluations, patience 2) ends at step 4 of 8, and its last measurement is at step 4,
    where it stopped."""
    from rnnlab.config import compose
    from rnnlab.loop import execute

    cfg = compose([*TINY, "train.steps=8", "gradients.enabled=true", "gradients.every=0",
                   "gradients.batch_size=4", "train.early_stopping_patience=2",
                   "optim.learning_rate=1e-30", "logger.progress=false", "logger.plots=false",
                   "logger.wandb.mode=disabled", "train.compilation_cache=null",
                   "train.checkpoint_every=0"])
    summary = execute(cfg, tmp_path / "run")
    assert summary["steps_run"] == 4
    with np.load(tmp_path / "run" / "gradients.npz") as f:
        assert f["steps"].tolist() == [0, 4]


def test_rarely_run_programs_compile_light_with_the_same_outputs():
    """rnnlab.loop compiles init, evaluate and the gradient probe at LLVM optimisation level 1
    on the CPU (compile 0.7-0.8x): their outputs must be bitwise those of XLA's default level
    (3), here for one LSTM seed on the adding task, orthogonal init (QR) included. (At level 0
    they differ, so this can fail.)"""
    from rnnlab import loop

    cfg = config.compose(["task=adding", "task.length=4", "cell.hidden_size=4",
                          "train.num_seeds=1", "train.batch_size=2", "train.eval_batch_size=2",
                          "train.steps=2", "train.log_every=2", "gradients.batch_size=2"])
    trainer = train.make_train(cfg)
    keys = train.seed_keys(cfg)
    full = {"xla_backend_optimization_level": 3, "xla_llvm_disable_expensive_passes": False}
    outputs = []
    for options in (loop.LIGHT_COMPILE, full):
        def jit(fn, options=options):
            return jax.jit(jax.vmap(fn), compiler_options=options)
        state = jit(trainer.init)(keys)
        outputs.append((state, jit(trainer.evaluate)(state), jit(trainer.probe)(state)))
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(as_numpy(u), as_numpy(v)),
                 *outputs)


def test_a_model_too_large_for_the_memory_is_refused_from_shapes(monkeypatch):
    """The training state of one seed, by hand: an LSTM of width 8 on the copy task's one-hot
    inputs (D = 10) and a dense head to 9 classes has P = 4(8(10 + 8) + 8) + 8 * 9 + 9
    parameters; Adam keeps two moments of that size, so the state is 3P float32 values and a
    few counters, the gradients P more. A run needing more than the memory is refused, and
    one that fits is not."""
    from rnnlab.checks import ConfigError

    cfg = config.compose(["cell.hidden_size=8", "train.num_seeds=3"])
    trainer = train.make_train(cfg)
    P = 4 * (8 * (10 + 8) + 8) + 8 * 9 + 9
    state, params = train.state_bytes(trainer)
    assert params == 4 * P
    assert 3 * 4 * P <= state < 3 * 4 * P + 64
    need = 3 * (state + params)
    monkeypatch.setattr(train, "device_memory_bytes", lambda: need)
    train.check_memory(trainer, 3)
    monkeypatch.setattr(train, "device_memory_bytes", lambda: need - 1)
    with pytest.raises(ConfigError, match=rf"widths \[8\] give {P:,} parameters per seed.* "
                                          r"of 3 seed\(s\) alone need .* train.num_seeds"):
        train.check_memory(trainer, 3)
    train.check_memory(trainer, 2)  # fewer seeds fit
    monkeypatch.setattr(train, "device_memory_bytes", lambda: None)  # unknown: no check
    train.check_memory(trainer, 10**6)
