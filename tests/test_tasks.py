"""Tests of the synthetic recall and timing tasks: adding, temporal_order, selective_copy,
associative_recall, timed_spikes.

Every label check recomputes the target from the inputs with NumPy, independently of the
generator; every baseline check applies the baseline predictor through the task's own
``metrics`` on a large sample and compares with the analytic value within sampling error.

Compilation dominates the run time on CPU, so each task instance is sampled by one compiled
program at one batch size (``BATCH``), and every test of that instance shares the batch.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import config, train
from rnnlab.tasks import TASKS, make_task
from rnnlab.tasks.adding import AddingTask
from rnnlab.tasks.associative_recall import AssociativeRecallTask
from rnnlab.tasks.selective_copy import SelectiveCopyTask
from rnnlab.tasks.temporal_order import TemporalOrderTask
from rnnlab.tasks.timed_spikes import TimedSpikesTask

BATCH = 4096  # sequences per sample: enough for the baselines' sampling error
ROWS = 512  # rows checked one by one by the Python-loop recomputations
SMALL = {
    "adding": AddingTask(length=21),
    "temporal_order_6a": TemporalOrderTask(length=30, num_relevant=2),
    "temporal_order_6b": TemporalOrderTask(length=40, num_relevant=3, num_distractors=3),
    "selective_copy": SelectiveCopyTask(length=20, num_tokens=6, num_symbols=5),
    "associative_recall": AssociativeRecallTask(length=24, num_pairs=6, num_queries=4,
                                                key_vocab_size=9, value_vocab_size=7),
    "timed_spikes_msd": TimedSpikesTask(mode="msd", length=30, min_interval=5, max_interval=21),
    "timed_spikes_gts": TimedSpikesTask(mode="gts", length=40, period=7),
}
NEW_TASKS = ("adding", "temporal_order", "selective_copy", "associative_recall", "timed_spikes")


@functools.cache
def _programs(task):
    sample = jax.jit(lambda key: task.sample(key, BATCH))
    sample_keys = jax.jit(jax.vmap(lambda key: task.sample(key, BATCH)))
    evaluate = jax.jit(lambda out, batch: (task.loss(out, batch), task.metrics(out, batch)))
    return sample, sample_keys, evaluate


@functools.cache
def batch_of(task, seed: int = 0):
    """``task.sample(jax.random.key(seed), BATCH)`` under jit, computed once per test run."""
    return _programs(task)[0](jax.random.key(seed))


def metrics(task, out, batch):
    loss, m = _programs(task)[2](out, batch)
    assert float(m["loss"]) == pytest.approx(float(loss), rel=1e-6)
    return {k: float(v) for k, v in m.items()}


def _np(batch):
    return tuple(None if a is None else np.asarray(a) for a in batch)


def _out_shape(task, batch):
    """The model's output shape: ``[B, O]`` for readout last, ``[B, T, O]`` for every step."""
    B, T = batch.x.shape[:2]
    return (B, task.output_size) if task.readout == "last" else (B, T, task.output_size)


# ---- the contract, for every task -----------------------------------------------------------
def test_new_tasks_are_registered():
    assert set(NEW_TASKS) <= set(TASKS)


@pytest.mark.parametrize("case", sorted(SMALL))
def test_shapes_dtypes_and_contract(case):
    task = SMALL[case]
    batch = batch_of(task)
    T = task.sequence_length
    if task.vocab_size is not None:
        assert task.input_size is None
        assert batch.x.shape == (BATCH, T) and batch.x.dtype == jnp.int32
        x = np.asarray(batch.x)
        assert x.min() >= 0 and x.max() < task.vocab_size
    else:
        assert batch.x.shape == (BATCH, T, task.input_size) and batch.x.dtype == jnp.float32
    assert batch.weight.dtype == jnp.float32 and batch.seq_lengths is None
    if task.readout == "last":
        assert batch.weight.shape == (BATCH,) and batch.y.shape[0] == BATCH
    else:
        assert batch.weight.shape == (BATCH, T) and batch.y.shape[:2] == (BATCH, T)
    if jnp.issubdtype(batch.y.dtype, jnp.integer):
        y = np.asarray(batch.y)
        assert y.min() >= 0 and y.max() < task.output_size
    out = jax.random.normal(jax.random.key(1), _out_shape(task, batch), jnp.float32)
    m = metrics(task, out, batch)
    assert all(np.isfinite(v) for v in m.values())
    assert set(task.baselines()) <= set(m)
    assert all(isinstance(v, float) for v in task.baselines().values())
    assert task.solved(m) in (True, False)


@pytest.mark.parametrize("case", sorted(SMALL))
def test_sampling_is_a_function_of_the_key_under_jit_and_vmap(case):
    task = SMALL[case]
    sample, sample_keys, _ = _programs(task)
    first, again, other = (_np(batch_of(task)), _np(sample(jax.random.key(0))),
                           _np(sample(jax.random.key(1))))
    mapped = _np(sample_keys(jnp.stack([jax.random.key(0), jax.random.key(1)])))
    assert not np.array_equal(first[0], other[0])
    for a, b, c, m in zip(first, again, other, mapped, strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, m[0])
            np.testing.assert_array_equal(c, m[1])


# ---- adding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("task", [SMALL["adding"], AddingTask(length=2)], ids=["T21", "T2"])
def test_adding_labels(task):
    x, y, w, _ = _np(batch_of(task))
    values, marks = x[..., 0].astype(np.float64), x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(marks).tolist()) <= {0.0, 1.0}
    assert (marks.sum(axis=1) == 2).all()
    half = task.length // 2
    for b in range(ROWS):
        where = np.flatnonzero(marks[b])
        assert where[0] < half <= where[1]
        assert y[b, 0] == pytest.approx(values[b, where].sum(), abs=1e-6)
    assert y.shape == (BATCH, 1) and y.dtype == np.float32
    np.testing.assert_array_equal(w, np.ones(BATCH, np.float32))


def test_adding_baseline_and_metrics():
    task = SMALL["adding"]
    batch = batch_of(task)
    base = task.baselines()
    assert base["mse"] == pytest.approx(1 / 6) and base["loss"] == base["mse"]
    assert base["solved_fraction"] == pytest.approx(0.0784)
    m = metrics(task, jnp.ones((BATCH, 1), jnp.float32), batch)  # always predict 1
    # sd of (S - 1)² is sqrt(7/180) ≈ 0.197: 4 standard errors ≈ 0.012 at 4096 sequences
    assert m["mse"] == pytest.approx(base["mse"], abs=0.013)
    assert m["loss"] == m["mse"]
    assert m["solved_fraction"] == pytest.approx(base["solved_fraction"],
                                                 abs=4 * math.sqrt(0.0784 * 0.9216 / BATCH))
    assert not task.solved(m)
    near = metrics(task, batch.y + 0.03, batch)
    assert near["solved_fraction"] == 1.0 and task.solved(near)
    assert metrics(task, batch.y + 0.05, batch)["solved_fraction"] == 0.0
    assert task.solved({"mse": 0.005}) and not task.solved({"loss": 0.02})


# ---- temporal order -------------------------------------------------------------------------
def test_temporal_order_windows_match_the_paper_at_length_100():
    assert TemporalOrderTask(length=100, num_relevant=2).windows == ((10, 20), (50, 60))
    assert TemporalOrderTask(length=100, num_relevant=3).windows == ((10, 20), (33, 43),
                                                                     (66, 76))


@pytest.mark.parametrize("case", ["temporal_order_6a", "temporal_order_6b"])
def test_temporal_order_labels(case):
    task = SMALL[case]
    D, N = task.num_distractors, task.num_relevant
    x, y, _, _ = _np(batch_of(task))
    assert task.output_size == 2**N and task.vocab_size == D + 4
    assert (x[:, 0] == D + 2).all() and (x[:, -1] == D + 3).all()
    for b in range(ROWS):
        where = np.flatnonzero((x[b] == D) | (x[b] == D + 1))  # scan for X and Y
        assert len(where) == N
        for t, (lo, hi) in zip(where, task.windows, strict=True):
            assert lo <= t <= hi
        order = "".join("0" if x[b, t] == D else "1" for t in where)  # X = 0, Y = 1
        assert y[b] == int(order, 2)
        rest = np.delete(x[b], np.concatenate([[0, x.shape[1] - 1], where]))
        assert (rest < D).all()
    assert sorted(np.unique(y).tolist()) == list(range(2**N))


@pytest.mark.parametrize("case", ["temporal_order_6a", "temporal_order_6b"])
def test_temporal_order_baseline(case):
    task = SMALL[case]
    C = 2**task.num_relevant
    batch = batch_of(task)
    assert task.baselines() == pytest.approx({"loss": math.log(C), "accuracy": 1 / C})
    m = metrics(task, jnp.zeros((BATCH, C), jnp.float32), batch)  # uniform; argmax: class 0
    assert m["loss"] == pytest.approx(math.log(C), rel=1e-5)
    assert m["accuracy"] == pytest.approx(1 / C, abs=4 * math.sqrt((1 / C) / BATCH))
    assert not task.solved(m)
    assert task.solved(metrics(task, jax.nn.one_hot(batch.y, C, dtype=jnp.float32), batch))


# ---- selective copy -------------------------------------------------------------------------
def test_selective_copy_labels():
    task = SMALL["selective_copy"]
    S, T, K = task.num_symbols, task.length, task.num_tokens
    x, y, w, _ = _np(batch_of(task))
    assert task.output_size == S and task.vocab_size == S + 2
    assert (x[:, T:] == S + 1).all()
    recall = np.concatenate([np.zeros((BATCH, T)), np.ones((BATCH, K))], axis=1)
    np.testing.assert_array_equal(w, recall)
    for b in range(ROWS):
        symbols = [int(v) for v in x[b, :T] if v != S]  # scan the prefix
        assert len(symbols) == K
        assert symbols == y[b, T:].tolist()
    positions = np.argwhere(x[:, :T] != S)[:, 1]
    assert positions.min() == 0 and positions.max() == T - 1  # spread over the whole prefix


def test_selective_copy_baseline():
    task = SMALL["selective_copy"]
    S, T = task.num_symbols, task.length
    batch = batch_of(task)
    uniform = jnp.zeros(_out_shape(task, batch), jnp.float32)
    m = metrics(task, uniform, batch)
    assert task.baselines() == pytest.approx({"loss": math.log(S), "accuracy": 1 / S})
    assert m["loss"] == pytest.approx(math.log(S), rel=1e-5)
    n = BATCH * task.num_tokens
    assert m["accuracy"] == pytest.approx(1 / S, abs=4 * math.sqrt((1 / S) / n))
    # only the recall steps count: confident logits on the prefix leave the loss unchanged
    loud = metrics(task, uniform.at[:, :T, 0].set(50.0), batch)
    assert loud["loss"] == pytest.approx(m["loss"], rel=1e-6)
    assert task.solved(metrics(task, jax.nn.one_hot(batch.y, S, dtype=jnp.float32), batch))


# ---- associative recall ---------------------------------------------------------------------
def test_associative_recall_labels():
    task = SMALL["associative_recall"]
    Kv, V, P, Q = (task.key_vocab_size, task.value_vocab_size, task.num_pairs,
                   task.num_queries)
    pad = Kv + V
    x, y, w, _ = _np(batch_of(task))
    assert task.vocab_size == Kv + V + 1 and task.output_size == V
    for b in range(ROWS):
        keys, values = x[b, 0:2 * P:2], x[b, 1:2 * P:2]
        assert (keys < Kv).all() and len(set(keys.tolist())) == P
        assert ((values >= Kv) & (values < Kv + V)).all()
        memory = dict(zip(keys.tolist(), values.tolist(), strict=True))
        queries = np.flatnonzero(x[b, 2 * P:] != pad) + 2 * P
        assert len(queries) == Q
        assert len(set(x[b, queries].tolist())) == Q  # each key queried at most once
        for t in queries:
            assert y[b, t] == memory[int(x[b, t])] - Kv
        expected_w = np.zeros(task.length, np.float32)
        expected_w[queries] = 1.0
        np.testing.assert_array_equal(w[b], expected_w)


def test_associative_recall_baseline():
    task = SMALL["associative_recall"]
    V = task.value_vocab_size
    batch = batch_of(task)
    m = metrics(task, jnp.zeros(_out_shape(task, batch), jnp.float32), batch)
    assert task.baselines() == pytest.approx({"loss": math.log(V), "accuracy": 1 / V})
    assert m["loss"] == pytest.approx(math.log(V), rel=1e-5)
    n = BATCH * task.num_queries
    assert m["accuracy"] == pytest.approx(1 / V, abs=4 * math.sqrt((1 / V) / n))
    assert task.solved(metrics(task, jax.nn.one_hot(batch.y, V, dtype=jnp.float32), batch))


# ---- timed spikes ---------------------------------------------------------------------------
def test_msd_labels():
    task = SMALL["timed_spikes_msd"]
    x, y, _, _ = _np(batch_of(task))
    assert task.readout == "last" and y.shape == (BATCH, 1)
    assert set(np.unique(x).tolist()) == {0.0, 1.0}
    intervals = []
    for b in range(ROWS):
        spikes = np.flatnonzero(x[b, :, 0])
        assert len(spikes) == 2 and spikes[1] == task.length - 1
        intervals.append(spikes[1] - spikes[0])
    np.testing.assert_array_equal(np.array(intervals, np.float32), y[:ROWS, 0])
    assert y.min() == task.min_interval and y.max() == task.max_interval


@pytest.mark.parametrize("task", [
    SMALL["timed_spikes_msd"],  # 17 intervals: odd, the mean is an interval
    TimedSpikesTask(mode="msd", length=51, min_interval=49, max_interval=50),  # 2: even
], ids=["5-21", "49-50"])
def test_msd_baseline(task):
    d = np.arange(task.min_interval, task.max_interval + 1, dtype=np.float64)  # equally likely
    n, mean = len(d), d.mean()
    base = task.baselines()
    assert base["timing_error"] == pytest.approx(np.abs(d - mean).mean())
    assert base["loss"] == pytest.approx(d.var() / task.max_interval**2)
    assert base["exact_fraction"] == pytest.approx(1 / n)
    batch = batch_of(task)
    m = metrics(task, jnp.full((BATCH, 1), mean / task.max_interval, jnp.float32), batch)
    # |d - mean| is at most n/2 and its sd at most n/4: 4 standard errors below n / 16
    assert m["timing_error"] == pytest.approx(base["timing_error"], abs=n / 16)
    assert m["loss"] == pytest.approx(base["loss"], rel=0.1)
    assert m["exact_fraction"] == pytest.approx(1 / n, abs=4 * math.sqrt((1 / n) / BATCH))
    assert not task.solved(m)


def test_msd_metrics_on_exact_and_shifted_predictions():
    task = SMALL["timed_spikes_msd"]
    batch = batch_of(task)
    exact = metrics(task, batch.y / task.max_interval, batch)
    assert exact["exact_fraction"] == 1.0 and exact["loss"] < 1e-12
    assert exact["timing_error"] == pytest.approx(0.0, abs=1e-5)
    assert task.solved(exact)
    off = metrics(task, (batch.y + 0.6) / task.max_interval, batch)
    assert off["exact_fraction"] == 0.0
    assert off["timing_error"] == pytest.approx(0.6, abs=1e-4)


def test_gts_labels():
    task = SMALL["timed_spikes_gts"]
    n, T = task.period, task.length
    x, y, w, _ = _np(batch_of(task))
    assert task.readout == "every" and y.shape == (BATCH, T) and w.shape == (BATCH, T)
    onsets = []
    for b in range(ROWS):
        trigger = np.flatnonzero(x[b, :, 0])
        assert len(trigger) == 1 and trigger[0] < n
        onsets.append(int(trigger[0]))
        assert np.flatnonzero(y[b]).tolist() == list(range(trigger[0] + n, T, n))
    assert min(onsets) == 0 and max(onsets) == n - 1


def test_gts_baseline_and_metrics():
    task = SMALL["timed_spikes_gts"]
    batch = batch_of(task)
    r = task.variant.mean_rate()
    # the analytic rate against the sample's, and against 1/period
    assert r == pytest.approx(float(np.asarray(batch.y).mean()), abs=0.004)
    assert abs(r - 1 / task.period) < 1 / task.length
    base = task.baselines()
    assert base["loss"] == pytest.approx(-r * math.log(r) - (1 - r) * math.log(1 - r))
    constant = jnp.full(_out_shape(task, batch), math.log(r / (1 - r)), jnp.float32)
    m = metrics(task, constant, batch)
    assert m["loss"] == pytest.approx(base["loss"], abs=0.01)
    assert m["exact_fraction"] == base["exact_fraction"] == 0.0
    spikes = jnp.where(batch.y > 0.5, 8.0, -8.0)[:, :, None]
    exact = metrics(task, spikes, batch)
    assert exact["exact_fraction"] == 1.0 and exact["timing_error"] == 0.0
    assert task.solved(exact)
    early = metrics(task, jnp.roll(spikes, -1, axis=1), batch)  # every spike one step early
    assert early["exact_fraction"] == 0.0 and early["timing_error"] == 1.0
    assert not task.solved(early)


# ---- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, options, match", [
    ("adding", {"length": 1}, r"length must be an int >= 2.*got 1"),
    ("temporal_order", {"num_relevant": 4}, r"num_relevant must be one of \[2, 3\].*got 4"),
    ("temporal_order", {"length": 9}, r"length=9 is too short.*length >= 10"),
    ("temporal_order", {"num_distractors": 0}, r"num_distractors must be an int >= 1; got 0"),
    ("selective_copy", {"length": 5, "num_tokens": 6}, r"num_tokens=6 does not fit.*length=5"),
    ("selective_copy", {"num_symbols": 1}, r"num_symbols must be an int >= 2; got 1"),
    ("copy", {"num_symbols": 1}, r"num_symbols must be an int >= 2; got 1"),
    ("associative_recall", {"value_vocab_size": 1}, r"value_vocab_size must be an int >= 2"),
    ("associative_recall", {"num_pairs": 9, "key_vocab_size": 8},
     r"num_pairs=9 distinct keys.*key_vocab_size=8"),
    ("associative_recall", {"num_queries": 9}, r"num_queries=9 exceeds num_pairs=8"),
    ("associative_recall", {"length": 20}, r"do not fit in length=20"),
    ("timed_spikes", {"mode": "pfg"}, r"mode must be one of \['gts', 'msd'\]; got 'pfg'"),
    ("timed_spikes", {"length": 50}, r"length=50 cannot hold.*max_interval=50.*>= .* = 51"),
    ("timed_spikes", {"min_interval": 30, "max_interval": 20},
     r"max_interval must be an int >= min_interval=30; got 20"),
    ("timed_spikes", {"mode": "gts", "period": 1}, r"period must be an int >= 2; got 1"),
    ("timed_spikes", {"mode": "gts", "length": 19, "period": 10},
     r"length=19 is too short for period=10.*>= 2·period = 20"),
])
def test_invalid_fields_raise(name, options, match):
    with pytest.raises(ValueError, match=match):
        make_task(name, **options)


# ---- configs: compose and train two steps ---------------------------------------------------
COMMON = ["train.steps=2", "train.log_every=1", "cell.hidden_size=8", "train.num_seeds=1",
          "train.batch_size=4", "train.eval_batch_size=8", "gradients.every=0"]


@pytest.mark.parametrize("overrides", [
    ["task=adding", "task.length=8"],
    ["task=temporal_order", "task.length=12", "task.num_relevant=3"],
    ["task=selective_copy", "task.length=8", "task.num_tokens=3", "task.num_symbols=4"],
    ["task=associative_recall", "task.length=10", "task.num_pairs=3", "task.num_queries=3",
     "task.key_vocab_size=4", "task.value_vocab_size=4"],
    ["task=timed_spikes", "task.length=10", "task.min_interval=2", "task.max_interval=8"],
    ["task=timed_spikes", "task.mode=gts", "task.length=10", "task.period=4"],
], ids=lambda o: "-".join(v.split("=")[1] for v in o[:2]))
def test_config_composes_and_trains_two_steps(overrides):
    cfg = config.compose(overrides + COMMON)
    trainer = train.make_train(cfg)
    assert trainer.task.registered_name == cfg.task.name

    @jax.jit
    def two_steps(key):  # one program: init, two training steps, one evaluation
        state = trainer.init(key)
        state, history = jax.lax.scan(lambda s, _: trainer.train_step(s), state, None,
                                      length=cfg.train.steps)
        return history, trainer.evaluate(state)

    history, evaluation = two_steps(train.seed_keys(cfg)[0])
    loss = np.asarray(history[train.LOSS])
    assert loss.shape == (2,) and np.isfinite(loss).all()
    assert set(trainer.task.baselines()) <= set(evaluation)
    for name, value in evaluation.items():
        assert np.isfinite(float(value)), name
