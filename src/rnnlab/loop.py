"""The host side of a run: all seeds of one config in one jitted, vmapped program, run in
chunks of ``train.log_every`` steps with logging, evaluation, gradient probes, divergence
checks and early stopping between chunks.

``execute(cfg, run_dir)`` is what ``python -m rnnlab.run`` calls for each job. The vmapped
axis is one of *members*: :func:`fit_members` trains several jobs' seeds (each with its own
optimizer values) in one program, with the host loop kept per job (:class:`Part`); :func:`fit`
is the one-job case, and :mod:`rnnlab.packing` runs packed sweeps through it.
"""

import dataclasses
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from rnnlab import gradients
from rnnlab.checks import ConfigError
from rnnlab.jobs import claim_run_dir
from rnnlab.logging import LocalSink, Logger, WandbSink, flatten
from rnnlab.tasks.base import Task
from rnnlab.train import LOSS, Trainer, check_memory, make_train, param_count, seed_keys


def _host(tree) -> dict:
    return jax.tree.map(np.asarray, jax.device_get(tree))


# XLA options for the programs a run calls rarely (initialisation, evaluation, gradient probe)
# on the CPU: LLVM's optimisation level 1 instead of XLA's default (3). Measured on a 2-core CPU
# by scripts/bench_compile_level.py (docs/benchmarks.md, "Compile once per shape"): their
# compile times drop to 0.71-0.83x (adding task, LSTM and GRU 128: about 0.7 s of a cold run),
# their run times stay within noise (0.93-1.02x) and their outputs are bitwise the same. The
# training chunk keeps the default: it runs at every step, and its times at level 1 were within
# the noise either way (0.94-1.06x in two measurements).
LIGHT_COMPILE = {"xla_backend_optimization_level": 1}


def _jit_light(fn):
    """``jax.jit(fn)``, compiled with :data:`LIGHT_COMPILE` on the CPU backend (unless JAX's
    ``jax_disable_most_optimizations`` already compiles everything at level 0)."""
    if (jax.default_backend() == "cpu"
            and not jax.config.values.get("jax_disable_most_optimizations", False)):
        return jax.jit(fn, compiler_options=LIGHT_COMPILE)
    return jax.jit(fn)


def _select(mask_S, new, old):
    """Per-seed choice between two vmapped pytrees."""
    def pick(n, o):
        m = jnp.reshape(mask_S, mask_S.shape + (1,) * (n.ndim - 1))
        return jnp.where(m, n, o)

    return jax.tree.map(pick, new, old)


def divergence_rule(train_loss: float, initial_loss: float, factor: float | None) -> str | None:
    """Which divergence rule a seed's chunk-mean training loss breaks, or None.

    ``non-finite loss``: NaN or inf. ``loss above F x initial``: the loss exceeds ``factor``
    times the seed's held-out loss at initialisation (a run whose loss explodes to 1e4 against
    an initial 0.8 has diverged even though every number is finite)."""
    if not math.isfinite(train_loss):
        return "non-finite loss"
    if factor is not None and math.isfinite(initial_loss) and train_loss > factor * abs(
            initial_loss):
        return (f"loss above {factor:g} x initial: training loss {train_loss:.4g} > "
                f"{factor:g} x {initial_loss:.4g}")
    return None


class Interrupted(Exception):
    """A stop signal (SIGTERM, SIGUSR1, SIGUSR2, or Ctrl-C's SIGINT) arrived during training; a
    checkpoint of the last finished chunk was written, and rerunning the same command in the
    same run folder continues from it."""


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2",
                                                        "SIGINT") if hasattr(signal, name))


class StopSignals:
    """Catches :data:`STOP_SIGNALS` from a job's start-up to the end of its training (what
    SLURM and submitit send before a preemption or a time limit): the host loop checkpoints
    after the chunk in flight (a signal during start-up or compilation: after the first
    chunk), then hands the signal to the handler that was there before (submitit's requeue),
    or raises :class:`Interrupted`. A signal that no training loop took up (it arrived after
    the last chunk, or start-up failed) is raised again, to the previous handler, when the
    block ends. Only in the main thread; elsewhere it does nothing.

    Ctrl-C (SIGINT) is a stop signal too, unless the process ignores it: the first stops the
    run after the chunk in flight, with a checkpoint; a second exits at once with status 130,
    as SIGKILL would (the run resumes from its last checkpoint)."""

    def __init__(self):
        self.received: int | None = None
        self._forwarded = False
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # started with Ctrl-C ignored (nohup, a background job): kept
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            if self.received is not None:  # Ctrl-C again: now, as SIGKILL would (the run
                # resumes from its last checkpoint; an exception raised here could land in
                # any callback, such as the garbage collector's, and be lost)
                print("\n[rnnlab] stopped by Ctrl-C; rerunning the same command in the same "
                      "run folder continues from its last checkpoint", file=sys.stderr,
                      flush=True)
                os._exit(130)
            print("\n[rnnlab] Ctrl-C: stopping after the chunk in flight, with a checkpoint "
                  "(Ctrl-C again: stop now)", file=sys.stderr, flush=True)
        if self.received is None:
            self.received = signum

    def __exit__(self, *exc):
        installed = bool(self._previous)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if installed and self.received is not None and not self._forwarded:
            self._forwarded = True
            signal.raise_signal(self.received)  # what it would have done without this block
        return False

    def forward(self) -> None:
        """After the checkpoint: the previous handler (e.g. submitit's), else Interrupted."""
        self._forwarded = True
        signum = self.received
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)
        raise Interrupted(f"stopped by {signal.Signals(signum).name} after a checkpoint; "
                          "rerun the same command in the same run folder to continue")


def _hex(values) -> list[str]:
    return [float(v).hex() for v in np.asarray(values, np.float64)]


def _unhex(values) -> np.ndarray:
    return np.asarray([float.fromhex(v) for v in values], np.float64)


@dataclasses.dataclass
class Part:
    """One job's share of a (packed) program: its members are consecutive rows of the member
    axis, one per seed in ``seeds``; it logs into its own ``logger``, checkpoints into its own
    ``checkpoints`` (the run folder's), and ``resume`` is ``(trees, host)`` restored from them.
    ``host_extra`` joins every checkpoint's host JSON."""

    logger: Logger
    seeds: list[int]
    checkpoints: Any = None
    resume: tuple | None = None
    host_extra: dict | None = None


class _Book:
    """A part's host-side loop state (what its checkpoints' host JSON holds under ``loop``)."""

    def __init__(self, part: Part, start: int, ev: dict | None, whole: bool):
        self.part, self.rows = part, slice(start, start + len(part.seeds))
        self.whole = whole
        if part.resume is None:
            losses = ev[LOSS][self.rows]
            loop = {"step": 0, "alive": [True] * len(part.seeds),
                    "initial_loss": _hex(losses), "divergence": {},
                    "best_loss": _hex(np.where(np.isfinite(losses), losses, np.inf)),
                    "best_step": [0] * len(part.seeds), "since_best": [0] * len(part.seeds),
                    "stopped_early": False, "train_seconds": 0.0}
        else:
            loop = dict(part.resume[1]["loop"])
        self.alive = np.asarray(loop["alive"], bool)
        self.initial_loss = _unhex(loop["initial_loss"])
        self.divergence: dict[str, dict] = dict(loop["divergence"])
        self.best_loss = _unhex(loop["best_loss"])
        self.best_step = np.asarray(loop["best_step"], int)
        self.since_best = np.asarray(loop["since_best"], int)
        self.step, self.stopped_early = int(loop["step"]), bool(loop["stopped_early"])
        self.seconds_before = float(loop["train_seconds"])
        self.saved_at = self.step if part.resume is not None else None
        self.error: Exception | None = None
        self.left: tuple | None = None  # (state rows, eval rows) once it left the program

    @property
    def in_program(self) -> bool:
        return self.left is None

    @property
    def active(self) -> bool:
        return self.error is None and not self.stopped_early

    def take(self, tree):
        """This part's rows of a member-axis tree (the tree itself when it has no others)."""
        if self.whole:
            return tree
        return jax.tree.map(lambda x: x[self.rows], tree)

    def save(self, state, best_state, patience, seconds: float) -> None:
        trees = {"state": self.take(state)}
        if patience is not None:
            trees["best"] = self.take(best_state)
        host = {"loop": {"step": self.step, "alive": self.alive.tolist(),
                         "initial_loss": _hex(self.initial_loss),
                         "divergence": self.divergence, "best_loss": _hex(self.best_loss),
                         "best_step": self.best_step.tolist(),
                         "since_best": self.since_best.tolist(),
                         "stopped_early": self.stopped_early,
                         "train_seconds": self.seconds_before + seconds},
                "logger": self.part.logger.position(), **(self.part.host_extra or {})}
        self.part.checkpoints.save(self.step, trees, host)
        self.saved_at = self.step


def fit(trainer: Trainer, keys: jax.Array, logger: Logger, seeds: list[int], *,
        gradients_every: int | None, patience: int | None = None, progress: bool = True,
        divergence_factor: float | None = None, checkpoints=None,
        checkpoint_every: int | None = None, resume=None, host_extra: dict | None = None,
        sharding=None, stop: "StopSignals | None" = None, hparams: dict | None = None):
    """Trains all seeds together. Returns ``(state, eval_metrics, info)``; with ``patience``,
    the state is each seed's best on the held-out loss (Keras' ``restore_best_weights``).

    A seed diverges when its training loss is not finite, or exceeds ``divergence_factor``
    times its initial held-out loss (:func:`divergence_rule`); it is logged as an event, left
    out of the summary, and ``info["divergence"]`` says which rule fired at which step.

    With ``checkpoints`` (:class:`rnnlab.checkpoint.Checkpoints`), the training state and the
    host loop's state are saved every ``checkpoint_every`` steps, at the end, and when ``stop``
    catches a signal; ``resume`` is ``(trees, host)`` restored from one, and training continues
    exactly where it stopped (same batches, same results). ``host_extra`` joins every
    checkpoint's host JSON. ``sharding`` places the seed axis of the state over devices.
    ``hparams``: each seed's optimizer values ({name: array [S]} for
    :data:`rnnlab.train.HPARAMS`; default the config's). :func:`fit_members` is the same for
    several jobs in one program.

    Raises ``FloatingPointError`` when every seed has diverged, :class:`Interrupted` after a
    stop signal."""
    part = Part(logger, list(seeds), checkpoints, resume, host_extra)
    (out,) = fit_members(trainer, keys, [part], hparams=hparams,
                         gradients_every=gradients_every, patience=patience,
                         progress=progress, divergence_factor=divergence_factor,
                         checkpoint_every=checkpoint_every, sharding=sharding, stop=stop)
    if isinstance(out, Exception):
        raise out
    return out


def _same_init(a: Trainer, b: Trainer) -> bool:
    """Whether two trainers initialise alike: the same task and the same model up to its
    dropout rate (read only in training steps; the members carry their own)."""
    return a.task == b.task and a.model.clone(dropout=0.0) == b.model.clone(dropout=0.0)


def _init_parts(init, default, inits: list, parts: list[Part], keys: jax.Array,
                hparams: dict | None):
    """The members' first states, each part's from its own ``inits`` entry (``init``, the
    compiled ``default``, for the parts whose entry is ``default``); one array per leaf along
    the member axis. Raises ValueError when a part's state differs in structure or shapes
    (its model differs in more than initialisation)."""
    if len(inits) != len(parts):
        raise ValueError(f"fit_members: {len(inits)} inits for {len(parts)} parts")
    states, start = [], 0
    compiled = {}
    for fn, part in zip(inits, parts, strict=True):
        stop = start + len(part.seeds)
        hp = None if hparams is None else {k: v[start:stop] for k, v in hparams.items()}
        owner = getattr(fn, "__self__", None)
        if fn == default or (isinstance(owner, Trainer)
                             and _same_init(owner, default.__self__)):
            run = init  # the same initialisation: compiled once
        else:
            if fn not in compiled:
                compiled[fn] = _jit_light(jax.vmap(fn))
            run = compiled[fn]
        states.append(run(keys[start:stop]) if hp is None else run(keys[start:stop], hp))
        start = stop
    want = jax.tree.map(lambda v: (v.shape[1:], v.dtype), states[0])
    for k, st in enumerate(states[1:], start=1):
        got = jax.tree.map(lambda v: (v.shape[1:], v.dtype), st)
        if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
            raise ValueError(f"fit_members: part {k}'s initial state differs in structure or "
                             f"shapes from part 0's; only initialisation may differ between "
                             f"packed jobs")
    return jax.tree.map(lambda *vs: jnp.concatenate(vs), *states)


REPACK = ("auto", "always", "never")
REPACK_MIN_FRACTION = 0.25  # of the program's rows, idle before ``repack="auto"`` drops them


def _repack_pays(repack: str, idle: int, members: int, chunk_seconds: list[float],
                 chunks_left: int) -> bool:
    """Whether to drop ``idle`` of the program's ``members`` rows now (see :func:`fit_members`:
    ``repack``). ``chunk_seconds``: each chunk's wall time so far, the first with its
    compilation."""
    if repack == "never" or idle == 0 or idle == members or chunks_left < 1:
        return False
    if repack == "always":
        return True
    if jax.default_backend() != "cpu" or len(chunk_seconds) < 2:
        return False  # accelerators run idle rows mostly for free (not measured here)
    steady = float(np.median(chunk_seconds[1:]))
    compile_seconds = max(chunk_seconds[0] - steady, 0.0)
    saved = idle / members * steady * chunks_left
    # the chunk, evaluation and probe programs compile again for the new member count
    return idle >= REPACK_MIN_FRACTION * members and saved > 2 * compile_seconds


def fit_members(trainer: Trainer, keys: jax.Array, parts: list[Part], *,
                hparams: dict | None = None, inits: list | None = None,
                gradients_every: int | None,
                patience: int | None = None, progress: bool = True,
                divergence_factor: float | None = None, checkpoint_every: int | None = None,
                sharding=None, stop: "StopSignals | None" = None,
                repack: str = "auto") -> list:
    """Trains the members of several jobs (``parts``, in order along the member axis) in one
    compiled program: ``keys`` (one per member) and ``hparams`` ({name: array [M]}, default
    the config's values) are the members' seeds and optimizer values. ``inits`` (one per
    part, default ``trainer.init`` for all) initialise each part's members: the parts' own
    trainers, whose models may differ from ``trainer``'s only in what initialisation reads
    (:data:`rnnlab.packing.INIT_ONLY`); the training program is ``trainer``'s.

    Each part keeps the host loop of :func:`fit` on its own (logging, divergence, early
    stopping, checkpoints into its own folder): a part whose seeds have all diverged, or
    that stopped early, stops logging while the others go on. Its rows then idle in the
    program; ``repack`` says when the program continues without them, recompiled for the rows
    still training (the others' results are those of the same program to float rounding):
    ``"always"`` as soon as a part leaves, ``"never"``, or ``"auto"``: on the CPU (whose step
    time grows with the rows) when at least :data:`REPACK_MIN_FRACTION` of the rows idle and
    the time they would take until the end (their share of the measured chunk time, times
    the chunks left) exceeds twice the first chunk's compilation time; never on accelerators,
    whose idle rows cost little (not measured here). A part that left is evaluated for its
    final results when it leaves (its best state with ``patience``, which no longer changes).
    Every resumed part must resume from the same step.

    With ``sharding`` (:func:`member_sharding`) the rows are padded to a multiple of its
    devices with copies of the first member (:func:`member_layout`): computed, never logged,
    checkpointed or returned.

    Returns one entry per part: ``(state, eval_metrics, info)`` as :func:`fit` returns, or the
    ``FloatingPointError`` of a part whose every seed diverged. Raises :class:`Interrupted`
    after a stop signal (every part checkpointed first)."""
    init = _jit_light(jax.vmap(trainer.init))
    chunk = jax.jit(jax.vmap(trainer.run_chunk))
    evaluate = _jit_light(jax.vmap(trainer.evaluate))
    probe = _jit_light(jax.vmap(trainer.probe))
    select = jax.jit(_select)
    real = sum(len(p.seeds) for p in parts)  # the program's rows before its padding
    pad = padded_members(sharding, real) - real

    def place(tree):  # padded with copies of the first member, sharded
        if pad:
            tree = jax.tree.map(lambda v: jnp.concatenate([v, jnp.repeat(v[:1], pad, 0)]),
                                tree)
        return tree if sharding is None else jax.device_put(tree, sharding)

    resumed = [p.resume is not None for p in parts]
    if any(resumed) and not all(resumed):
        raise ValueError("fit_members: either every part resumes or none does")
    books: list[_Book] = []
    if not any(resumed):
        hp = None if hparams is None else {k: jnp.asarray(v, jnp.float32)
                                           for k, v in hparams.items()}
        if inits is None:
            state = place(init(keys) if hp is None else init(keys, hp))
        else:
            state = place(_init_parts(init, trainer.init, inits, parts, keys, hp))
        ev = _host(evaluate(state))
        start = 0
        for p in parts:
            books.append(_Book(p, start, ev, whole=len(parts) == 1 and not pad))
            start += len(p.seeds)
        for b in books:
            b.part.logger.log(0, "eval", b.take(ev), b.part.seeds)
        if gradients_every is not None:
            g = _host(probe(state))
            for b in books:
                b.part.logger.log_gradients(0, b.take(g), b.part.seeds)
        best_state = state
    else:
        def joined(name):
            trees = [p.resume[0][name] for p in parts]
            return place(jax.tree.map(lambda *x: jnp.concatenate(x), *trees))

        state = joined("state")
        best_state = joined("best") if "best" in parts[0].resume[0] else state
        start = 0
        for p in parts:
            books.append(_Book(p, start, None, whole=len(parts) == 1 and not pad))
            start += len(p.seeds)
        if len({b.step for b in books}) > 1:
            raise ValueError(f"fit_members: parts resume from different steps "
                             f"{[b.step for b in books]}")
    step = books[0].step

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=trainer.steps, initial=step, unit="step", dynamic_ncols=True,
                   leave=False)
    t0 = time.perf_counter()

    def seconds() -> float:
        return time.perf_counter() - t0

    chunk_seconds: list[float] = []
    try:
        while step < trainer.steps and any(b.active for b in books):
            tc = time.perf_counter()
            state, tm = chunk(state)
            ev = evaluate(state)
            tm, ev = _host(tm), _host(ev)
            chunk_seconds.append(time.perf_counter() - tc)
            step += trainer.chunk_size
            last_chunk = step == trainer.steps
            probe_now = gradients_every is not None and (
                last_chunk or (gradients_every and step % gradients_every == 0))
            g = None
            improved = np.zeros(len(tm[LOSS]), bool)
            for b in books:
                if not b.active:
                    continue
                b.step = step
                logger, seeds = b.part.logger, b.part.seeds
                tm_b, ev_b = b.take(tm), b.take(ev)
                logger.log(step, "train", tm_b, seeds)
                logger.log(step, "eval", ev_b, seeds)
                for i in np.flatnonzero(b.alive):
                    train_loss = float(tm_b[LOSS][i])
                    rule = divergence_rule(train_loss, float(b.initial_loss[i]),
                                           divergence_factor)
                    if rule is None and not math.isfinite(float(ev_b[LOSS][i])):
                        rule = "non-finite loss"
                    if rule is not None:
                        b.alive[i] = False
                        b.divergence[str(seeds[i])] = {"step": step, "rule": rule}
                        logger.event("diverged", seed=seeds[i], step=step, rule=rule,
                                     train_loss=train_loss, eval_loss=float(ev_b[LOSS][i]))
                if not b.alive.any():
                    rules = sorted({d["rule"].split(":")[0] for d in b.divergence.values()})
                    b.error = FloatingPointError(
                        f"training diverged for every seed by step {step} "
                        f"({'; '.join(rules)}; train losses {tm_b[LOSS].tolist()}); lower "
                        f"optim.learning_rate or set optim.grad_clip")
                    continue
                if patience is not None:
                    better = b.alive & (ev_b[LOSS] < b.best_loss)
                    improved[b.rows] = better
                    b.best_loss = np.where(better, ev_b[LOSS], b.best_loss)
                    b.best_step = np.where(better, step, b.best_step)
                    b.since_best = np.where(better, 0, b.since_best + 1)
                    if np.all(b.since_best[b.alive] >= patience):
                        b.stopped_early = True
                # the last step a part trains gets a measurement, early stop included
                if probe_now or (gradients_every is not None and b.stopped_early):
                    g = _host(probe(state)) if g is None else g
                    logger.log_gradients(step, b.take(g), seeds)
            if patience is not None and improved.any():
                best_state = select(jnp.asarray(improved), state, best_state)
            if bar is not None:
                bar.update(trainer.chunk_size)
                bar.set_postfix({k: f"{np.nanmean(v[:real]):.4g}" for k, v in ev.items()})
            stopping = stop is not None and stop.received is not None
            if stopping:  # before the checkpoint, so that the resumed run's events keep it
                for b in books:
                    if b.error is None and b.step == step:
                        b.part.logger.event("interrupted", step=step,
                                            signal=signal.Signals(stop.received).name)
            for b in books:
                if b.error is None and b.step == step and b.part.checkpoints is not None and (
                        stopping or last_chunk or b.stopped_early
                        or (checkpoint_every and step % checkpoint_every == 0)):
                    b.save(state, best_state, patience, seconds())
            if stopping:
                stop.forward()
            program = [b for b in books if b.in_program]
            idle = sum(len(b.part.seeds) for b in program if not b.active)
            if _repack_pays(repack, idle, real, chunk_seconds,
                            (trainer.steps - step) // trainer.chunk_size):
                state, best_state, real = _repack(program, state, best_state, patience,
                                                  evaluate, sharding, step)
                chunk_seconds = chunk_seconds[:1]  # the next chunk compiles again
        for b in books:
            if (b.in_program and b.error is None and b.part.checkpoints is not None
                    and b.saved_at != b.step):
                b.save(state, best_state, patience, seconds())
    finally:
        if bar is not None:
            bar.close()
    wall = seconds()
    if patience is not None:
        state = best_state
    ev = _host(evaluate(state))  # also after a resumption that had nothing left to train
    out = []
    for b in books:
        if b.error is not None:
            out.append(b.error)
            continue
        total = b.seconds_before + wall
        info = {"steps_run": b.step, "alive": b.alive, "stopped_early": b.stopped_early,
                "divergence": b.divergence,
                "best_step": b.best_step if patience is not None else None,
                "train_seconds": total, "steps_per_second": b.step / max(total, 1e-9)}
        out.append((*(b.left or (b.take(state), b.take(ev))), info))
    return out


def _repack(program: list[_Book], state, best_state, patience, evaluate, sharding,
            step: int):
    """Drops the rows of the parts of ``program`` that stopped (:func:`fit_members`'s
    ``repack``): a part that stopped early keeps its final state and evaluation (taken now),
    the others' rows move up, laid out again over the program's devices
    (:func:`member_layout`, padded with copies of the first row left). Returns
    ``(state, best_state, rows left)``."""
    leaving = [b for b in program if not b.active]
    staying = [b for b in program if b.active]
    final = state if patience is None else best_state
    ev = None
    for b in leaving:
        if b.error is None:  # stopped early: what the end of the run would have reported
            ev = _host(evaluate(final)) if ev is None else ev
            b.left = (b.take(final), b.take(ev))
        else:
            b.left = ()
    rows = np.concatenate([np.arange(b.rows.start, b.rows.stop) for b in staying])
    kept, total = len(rows), sum(len(b.part.seeds) for b in program)
    target = None
    if sharding is not None:
        devices = list(sharding.mesh.devices.flat)
        layout = _sharding_over(devices, kept)
        rows = np.concatenate([rows, np.repeat(rows[:1], padded_members(layout, kept) - kept)])
        target = layout or devices[0]

    def place(tree):
        return tree if target is None else jax.device_put(tree, target)

    index = jnp.asarray(rows)
    state, best_state = (place(jax.tree.map(lambda v: v[index], t))
                         for t in (state, best_state))
    start = 0
    for b in staying:
        b.rows = slice(start, start + len(b.part.seeds))
        start += len(b.part.seeds)
        b.part.logger.event("repacked", step=step, members=kept, of=total)
    print(f"[rnnlab] step {step}: {kept} of {total} members still train; the program "
          f"continues with them", file=sys.stderr)
    return state, best_state, kept


def _spread(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "median": math.nan,
                "max": math.nan}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "median": float(np.median(v)), "max": float(v.max())}


def model_label(model, cell_name: str) -> str:
    """The architecture in words for titles: cell, widths, and whatever else shapes the stack
    (bidirectional and its merge, dropout, dense head, where the input projection runs), e.g.
    ``lstm widths=[128, 128] bidirectional (concat) · dropout 0.2 · projection in_scan``."""
    from rnnlab.recurrent import resolve_projection

    widths = [c.hidden_size for c in model.cells]
    text = f"{cell_name} widths={widths}"
    if model.bidirectional:
        text += f" bidirectional ({model.merge})"
    parts = [text]
    if model.dropout:
        parts.append(f"dropout {model.dropout:g}")
    if model.head_sizes:
        parts.append(f"head {list(model.head_sizes)}")
    parts.append(f"projection {resolve_projection(model.projection)}")
    return " · ".join(parts)


def _gradients_json(grad_summary: dict[str, float]) -> dict[str, Any]:
    """Gradient summaries as JSON-valid values: a half-life that does not decay (``inf``) is
    stored as ``null`` beside ``NAME/decays = false``; an unmeasurable one (NaN) as ``null``
    beside ``decays = null``; a finite one beside ``decays = true``."""
    out: dict[str, Any] = {}
    for key, value in grad_summary.items():
        value = float(value)
        if key.endswith("/half_life"):
            decays = None if math.isnan(value) else math.isfinite(value)
            out[key] = value if math.isfinite(value) else None
            out[key[: -len("half_life")] + "decays"] = decays
        else:
            out[key] = value if math.isfinite(value) else None
    return out


def summarize(cfg, trainer: Trainer, seeds: list[int], ev: dict, info: dict,
              grad_summary: dict) -> dict[str, Any]:
    """``summary.json``'s content (before the task's ``final_report``); the README's run-folder
    table lists its keys. ``seeds_solved`` counts the seeds that meet the task's criterion
    (``None`` for a task without one); the task's own metrics keep their names in ``final``."""
    task = trainer.task
    alive = info["alive"]
    has_criterion = type(task).solved is not Task.solved
    # "solved" only for a task with a criterion (a forecast has none: it said false)
    per_seed = {str(s): {k: float(v[i]) for k, v in ev.items()} | ({
        "solved": bool(task.solved({k: float(v[i]) for k, v in ev.items()}))}
        if has_criterion else {}) | {"diverged": not bool(alive[i])}
        for i, s in enumerate(seeds)}
    live = {k: np.asarray(v)[alive] for k, v in ev.items()}
    widths = [c.hidden_size for c in trainer.model.cells]
    return {
        "status": "ok",
        "title": (f"{task.label()} · {model_label(trainer.model, cfg.cell.name)} · "
                  f"{param_count(trainer):,} params"),
        "cell": cfg.cell.name,
        "task": task.registered_name,
        "sequence_length": task.sequence_length,
        "hidden_sizes": widths,
        "param_count": param_count(trainer),
        "seeds": seeds,
        "baselines": task.baselines(),
        "final": {k: _spread(v) for k, v in live.items()},
        "per_seed": per_seed,
        "seeds_solved": (sum(p["solved"] for p in per_seed.values()) if has_criterion
                         else None),
        "gradients": _gradients_json(grad_summary),
        "steps": trainer.steps,
        "early_stopping_patience": cfg.train.early_stopping_patience,
        **{k: v for k, v in info.items() if k != "alive"},
    }


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _stopping_line(summary: dict) -> str | None:
    steps, run = summary.get("steps"), summary.get("steps_run")
    best = summary.get("best_step")
    best_text = ""
    if best is not None:
        best = [int(b) for b in np.atleast_1d(best)]
        best_text = ("; best validation loss (weights kept) at step "
                     + (f"{best[0]:,}" if len(set(best)) == 1
                        else ", ".join(f"{b:,}" for b in best) + " (per seed)"))
    if summary.get("stopped_early"):
        return (f"stopped early at step {run:,} of {steps:,}: no validation improvement for "
                f"{summary.get('early_stopping_patience')} evaluations{best_text}")
    if best is not None:
        return f"early stopping did not trigger (all {run:,} steps run){best_text}"
    return None


FORECAST_COLUMNS = (("rmse", "RMSE"), ("mae", "MAE"), ("mase", "MASE"), ("smape", "sMAPE %"))


def _forecast_lines(forecast: dict) -> list[str]:
    """The test-span metrics in the series' units, model (mean ± std over live seeds) beside
    every baseline, as an aligned table."""
    live = [m for m in forecast.get("per_seed", []) if m]
    n, folds = len(live), int(forecast.get("folds", 1) or 1)  # per_seed: folds x seeds
    if folds == 1:
        label = f"{n} seed{'s' if n != 1 else ''}"
    elif n % folds == 0:
        label = f"{n // folds} seed{'s' if n != folds else ''} x {folds} folds"
    else:  # diverged seeds in some folds
        label = f"{n} fold-seed pairs"
    rows = [[f"model ({label})"]]
    for key, _ in FORECAST_COLUMNS:
        v = np.array([m[key] for m in live if m.get(key) is not None], dtype=np.float64)
        v = v[np.isfinite(v)]
        rows[0].append(f"{v.mean():.4g} ± {v.std():.2g}" if v.size else "—")
    for name, metrics in forecast.get("baselines", {}).items():
        rows.append([f"baseline {name}", *(_num(metrics.get(k)) for k, _ in FORECAST_COLUMNS)])
    header = ["", *(label for _, label in FORECAST_COLUMNS)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    target = (forecast.get("series") or {}).get("target", "the target")
    return [f"test span: {forecast.get('windows')} windows of {target}, errors in the series' "
            f"units (the baselines forecast the same windows)",
            *(fmt.format(*r).rstrip() for r in [header, *rows])]


def summary_line(summary: dict) -> str:
    """What a run ends with: its title; each held-out metric's mean ± std over the live seeds
    beside the task's baseline; for a forecast, the test span in the series' own units beside
    every baseline; when the run stopped early, at which step; the seeds that solved the task;
    each seed's numbers."""
    parts = []
    for name, stats in summary["final"].items():
        base = summary["baselines"].get(name)
        text = f"{name} {stats['mean']:.4g} ± {stats['std']:.2g}"
        if base is not None:
            text += f" (baseline {base:.4g})"
        parts.append(text)
    split = ("validation (loss, mae in the model's scaled units; val_* in the series' units)"
             if summary.get("forecast") else "held-out")
    lines = [summary["title"], f"{split}: " + " | ".join(parts)]
    if summary.get("forecast"):
        lines += _forecast_lines(summary["forecast"])
    stopping = _stopping_line(summary)
    if stopping:
        lines.append(stopping)
    if summary.get("seeds_solved") is not None:
        lines.append(f"seeds that solved the task: {summary['seeds_solved']} of "
                     f"{len(summary['per_seed'])}")
    lines.append("; ".join(
        f"seed {s}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()
                                  if isinstance(v, float)) + (" DIVERGED" if m["diverged"]
                                                              else "")
        for s, m in summary["per_seed"].items()))
    return "\n".join(f"[rnnlab] {line}" for line in lines)


def gradient_summary(logger: Logger) -> dict[str, float]:
    """Half-life and first/last ratio of the first and last measurement (seed mean)."""
    local = next((s for s in logger.sinks if isinstance(s, LocalSink)), None)
    if local is None or not local.grad_steps:
        return {}
    out = {}
    for when, m in (("init", 0), ("final", -1)):
        curves = {name: {"mean": np.nanmean(slot["mean"][m], axis=0)}
                  for name, slot in local.grad_curves.items()}
        out.update({f"{when}/{k}": v for k, v in gradients.summarize(curves).items()})
    return out


def make_logger(cfg, run_dir: Path, wandb_id: str | None = None) -> Logger:
    """The run folder's sinks; ``wandb_id`` resumes that W&B run."""
    w = cfg.logger.wandb
    group = w.group or (run_dir.parent.name if _in_sweep() else None)
    name = f"{cfg.task.name}-{cfg.cell.name}-{run_dir.name}"
    return Logger([LocalSink(run_dir, plots=cfg.logger.plots),
                   WandbSink(run_dir, mode=w.mode, project=w.project, entity=w.entity,
                             group=group, tags=[cfg.cell.name, cfg.task.name, *w.tags],
                             name=name, run_id=wandb_id)])


def _in_sweep() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def build(cfg) -> Trainer:
    """:func:`rnnlab.train.make_train`, with every failure reported as a
    :class:`~rnnlab.checks.ConfigError` (a value that cannot run): nothing is compiled or
    written yet."""
    try:
        trainer = make_train(cfg)
        check_memory(trainer, int(cfg.train.num_seeds))
        return trainer
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, LookupError, OSError, ImportError) as err:
        # a KeyError's str() is its message's repr: the message itself (a message's own
        # closing quote, test_start='2018-01-01', is kept)
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        raise ConfigError(text) from err


def execute(cfg, run_dir: str | Path, trainer: Trainer | None = None) -> dict[str, Any]:
    """One job: builds everything from ``cfg`` (or takes the ``trainer`` already built from
    it), trains all seeds, logs into ``run_dir``.

    Bad values raise :class:`~rnnlab.checks.ConfigError` before anything is written, and so
    does a run folder that holds a finished run or that another live run is writing
    (:func:`rnnlab.jobs.claim_run_dir`). After that, whatever happens, ``summary.json`` ends
    with a ``status`` (``ok`` or ``failed`` with the error) and every metric logged before a
    failure stays in the run folder. :func:`rnnlab.packing.execute_packed` does the same for
    several jobs trained as one program."""
    run_dir = Path(run_dir)
    if trainer is None:
        trainer = build(cfg)
    job = JobRun(cfg, run_dir, trainer)
    job.claim()
    try:
        # from here on, a stop signal while the job opens or compiles stops it after its
        # first chunk, with a checkpoint
        with StopSignals() as stop:
            job.open()
            part = job.part()
            state, ev, fit_info = fit(
                trainer, job.keys, part.logger, part.seeds, hparams=job.hparams(),
                checkpoints=part.checkpoints, resume=part.resume, stop=stop,
                sharding=member_sharding(cfg, len(part.seeds)), **fit_options(cfg))
        return job.finish(state, ev, fit_info)
    except Exception as err:
        job.failed(err)
        raise
    finally:
        job.close()


def fit_options(cfg) -> dict[str, Any]:
    """The arguments of :func:`fit` and :func:`fit_members` that come from the config alone
    (the same for every job of a packed program)."""
    g = cfg.gradients
    return {"gradients_every": g.every if g.enabled else None,
            "patience": cfg.train.early_stopping_patience, "progress": cfg.logger.progress,
            "divergence_factor": cfg.train.divergence_factor,
            "checkpoint_every": checkpoint_every(cfg)}


CHECKPOINT_CHUNKS = 10  # train.checkpoint_every=null: a checkpoint every 10 chunks
IGNORED_ON_RESUME = ("logger", "train.resume", "train.compilation_cache")  # may change on resuming


def checkpoint_every(cfg) -> int | None:
    """Steps between checkpoints: ``train.checkpoint_every``, or 10 chunks when null; None
    when checkpoints are off (0)."""
    every = cfg.train.checkpoint_every
    if every is None:
        return min(CHECKPOINT_CHUNKS * int(cfg.train.log_every), int(cfg.train.steps))
    return int(every) or None


def member_sharding(cfg, members: int | None = None):
    """A sharding of the member axis (``members`` rows; default ``train.num_seeds``) over the
    local devices (``train.devices`` of them; null: see :func:`member_layout`), or None for
    one device. The program's rows are ``padded_members(sharding, members)``."""
    members = int(cfg.train.num_seeds) if members is None else int(members)
    return _sharding_over(jax.local_devices(), members, cfg.train.devices)


def member_layout(members: int, devices: int, n: int | None = None) -> tuple[int, int]:
    """``(devices used, rows)`` for ``members`` members on at most ``devices`` devices.

    Each device runs its rows one after the other in effect (on the CPU, one device per core:
    a step's time grows with the rows of its device), so the layout with the fewest rows per
    device wins: ``per = ceil(members / min(members, devices))`` rows on
    ``ceil(members / per)`` devices, the rows padded to ``devices x per`` with copies of the
    first member that are computed and thrown away (3 members on 2 devices: 2 + 2 rows, one of
    them a copy; 5 on 4: 2 + 2 + 2 on 3 devices). ``n`` (``train.devices``) asks for exactly
    that many devices (at most ``members``): ``members`` padded to a multiple of it."""
    if members < 1 or devices < 1:
        raise ValueError(f"member_layout: {members} members on {devices} devices")
    if n is not None:
        n = min(int(n), members)
        return n, -(-members // n) * n
    per = -(-members // min(members, devices))
    used = -(-members // per)
    return used, used * per


def padded_members(sharding, members: int) -> int:
    """The rows of a program whose ``members`` members are placed with ``sharding``
    (:func:`member_sharding`): ``members`` padded to a multiple of its devices."""
    if sharding is None:
        return members
    n = sharding.mesh.size
    return -(-members // n) * n


def _sharding_over(devices: list, members: int, n: int | None = None):
    """The member axis (``members`` rows, padded as :func:`member_layout` says) sharded over
    the first devices of ``devices``, or None when that layout is one device."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    used, _ = member_layout(members, len(devices), n)
    if used == 1:
        return None
    return NamedSharding(Mesh(np.asarray(devices[:used]), ("seeds",)), PartitionSpec("seeds"))


seed_sharding = member_sharding  # the one-job name


def main_metric_record(task) -> dict[str, Any]:
    """``{"name", "maximize"}`` of the held-out metric a task (class or instance) is ranked
    by, as ``summary.json`` records it for the sweep's table."""
    return {"name": str(task.main_metric), "maximize": bool(task.maximize)}


def config_differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every leaf that differs, leaving out what may change on
    resumption (:data:`IGNORED_ON_RESUME`)."""
    a, b = flatten(old, sep="."), flatten(new, sep=".")
    keys = sorted(k for k in set(a) | set(b)
                  if not any(k == p or k.startswith(p + ".") for p in IGNORED_ON_RESUME))
    return [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in keys
            if a.get(k, "(absent)") != b.get(k, "(absent)")]


def folder_config_differences(run_dir: Path, cfg) -> list[str]:
    """:func:`config_differences` between the config the run in ``run_dir`` ran with (its
    ``config.yaml``; none: every key differs) and ``cfg``."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    saved = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    return config_differences(saved, OmegaConf.to_container(cfg, resolve=True))


def _restore(cfg, run_dir: Path, trainer: Trainer, checkpoints, keys):
    """``(trees, host)`` of the run folder's last good checkpoint, or None when it has none.

    Raises:
      ConfigError: the folder was made by another config (naming the keys that differ), or
        none of its checkpoints can be restored (naming them)."""
    from rnnlab.checkpoint import CheckpointError

    if checkpoints is None or not checkpoints.steps():
        return None
    diffs = folder_config_differences(run_dir, cfg)
    if diffs:
        raise ConfigError(f"run folder {run_dir} holds a run of another config; it cannot be "
                          f"resumed with this one. Keys that differ: {'; '.join(diffs)}")
    like = {"state": jax.eval_shape(jax.vmap(trainer.init), keys)}
    if cfg.train.early_stopping_patience is not None:
        like["best"] = like["state"]
    try:
        found = checkpoints.restore_latest(like)
    except CheckpointError as err:
        raise ConfigError(f"{err}. Set train.resume=false to start afresh in this folder "
                          "(its checkpoints and logs are then replaced)") from err
    if found is None:
        return None
    step, trees, host = found
    print(f"[rnnlab] resuming from the checkpoint at step {step} in {checkpoints.dir}",
          file=sys.stderr)
    return trees, host


def _start_afresh(run_dir: Path, checkpoints_too: bool) -> None:
    """Clears what an unfinished earlier run left in ``run_dir`` (its logs; with
    ``train.resume=false`` its checkpoints too), so that nothing of it mixes with this run.
    The lock and Hydra's files stay."""
    import shutil

    from rnnlab.checkpoint import FOLDER

    if checkpoints_too:
        shutil.rmtree(run_dir / FOLDER, ignore_errors=True)
    for name in ("metrics.jsonl", "events.jsonl", "gradients.npz", "summary.json"):
        (run_dir / name).unlink(missing_ok=True)


class JobRun:
    """One job's run folder while it trains, alone (:func:`execute`) or as a part of a packed
    program (:func:`rnnlab.packing.execute_packed`): ``claim`` (the folder's lock), ``open``
    (start afresh or restore its checkpoint, start its logger), ``part`` (its share of the
    program), then ``finish`` (summary.json) or ``failed``, and always ``close``."""

    def __init__(self, cfg, run_dir: Path, trainer: Trainer):
        self.cfg, self.run_dir, self.trainer = cfg, Path(run_dir), trainer
        self.seeds = list(range(cfg.train.seed, cfg.train.seed + cfg.train.num_seeds))
        self.keys = seed_keys(cfg)
        self.lock = self.logger = self.checkpoints = self.resume = None

    def hparams(self) -> dict[str, np.ndarray]:
        """This job's optimizer values (and dropout rate, when its model has dropout), one
        row per seed ({name: float32 [S]}: :attr:`rnnlab.train.Trainer.hparams`)."""
        return {k: np.full(len(self.seeds), v, np.float32)
                for k, v in self.trainer.hparams.items()}

    def claim(self) -> None:
        self.lock = claim_run_dir(self.run_dir)

    def open(self) -> None:
        cfg, run_dir = self.cfg, self.run_dir
        every = checkpoint_every(cfg)
        if not cfg.train.resume:
            _start_afresh(run_dir, checkpoints_too=True)
        if every is not None:
            from rnnlab.checkpoint import Checkpoints

            self.checkpoints = Checkpoints(run_dir, keep=int(cfg.train.checkpoint_keep))
        self.resume = _restore(cfg, run_dir, self.trainer, self.checkpoints, self.keys)
        if self.resume is None:
            _start_afresh(run_dir, checkpoints_too=False)
        host = self.resume[1] if self.resume is not None else {}
        self.logger = make_logger(cfg, run_dir,
                                  wandb_id=host.get("logger", {}).get("wandb_id"))
        trainer = self.trainer
        info = {"param_count": param_count(trainer), "seeds": self.seeds,
                "hidden_sizes": [c.hidden_size for c in trainer.model.cells],
                "jax_backend": jax.default_backend(), **trainer.task.describe()}
        self.logger.start(OmegaConf.to_container(cfg, resolve=True), info)
        if self.resume is not None:
            self.logger.rewind(host["logger"], host["loop"]["step"])
            skipped = {"skipped_checkpoints": self.checkpoints.skipped} if (
                self.checkpoints.skipped) else {}
            self.logger.event("resumed", step=host["loop"]["step"], **skipped)

    @property
    def resume_step(self) -> int | None:
        return None if self.resume is None else int(self.resume[1]["loop"]["step"])

    def part(self) -> Part:
        return Part(self.logger, self.seeds, self.checkpoints, self.resume)

    def finish(self, state, ev, fit_info, members: int | None = None) -> dict[str, Any]:
        """``summary.json`` of a job that trained (``members``: the rows of its program, for
        the record); returns the summary."""
        cfg, trainer, seeds = self.cfg, self.trainer, self.seeds
        ev = {**ev, **trainer.task.final_metrics(trainer, state, fit_info["alive"])}
        summary = summarize(cfg, trainer, seeds, ev, fit_info, gradient_summary(self.logger))
        summary["main_metric"] = main_metric_record(trainer.task)
        rows = members or len(seeds)
        sharding = member_sharding(cfg, rows)
        summary["devices"] = 1 if sharding is None else sharding.mesh.size
        summary["padding_members"] = padded_members(sharding, rows) - rows
        if members is not None:
            summary["packed_members"] = members
        hparams = self.hparams()

        def refit(task):  # the same config and seeds on another task (a forecast fold)
            again = dataclasses.replace(trainer, task=task)
            st, _, inf = fit(again, self.keys, Logger([]), seeds, gradients_every=None,
                             patience=cfg.train.early_stopping_patience, progress=False,
                             divergence_factor=cfg.train.divergence_factor,
                             sharding=member_sharding(cfg), hparams=hparams)
            return again, st, inf["alive"]

        summary.update(trainer.task.final_report(trainer, state, fit_info["alive"],
                                                 refit=refit))
        self.logger.finish(summary)
        return summary

    def failed(self, err: Exception) -> None:
        """Ends the run folder with ``status: failed`` (or ``interrupted``) and the error."""
        interrupted = isinstance(err, Interrupted)
        summary = {"status": "interrupted" if interrupted else "failed",
                   "error": f"{type(err).__name__}: {err}", "title": self.run_dir.name,
                   # so that the sweep's table names the task's metric beside the failure
                   "main_metric": main_metric_record(self.trainer.task)}
        if self.logger is None:
            self.logger = Logger([LocalSink(self.run_dir, plots=False)])
        if not interrupted:
            self.logger.event("failed", error=summary["error"],
                              traceback="".join(traceback.format_exception(err)))
        self.logger.finish(summary)

    def close(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.close()
            self.checkpoints = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
