"""``make_train(cfg) -> Trainer``: the pure training program.

``make_train`` does the Python-side set-up once (task, cells, model, optimizer, every static
size) and returns a :class:`Trainer` whose methods are pure functions of arrays:

* ``init(key, hparams=None) -> TrainState``: ``hparams`` (:data:`HPARAMS`), the member's
  optimizer values, default the config's.
* ``train_step(state) -> (state, metrics)``: samples a batch on the device, one update.
* ``run_chunk(state) -> (state, metrics)``: ``train.log_every`` steps in one ``lax.scan``.
* ``evaluate(state) -> metrics``: held-out evaluation.
* ``probe(state) -> gradient curves``: ``dL/dh_t`` through time (:mod:`rnnlab.gradients`).
* ``__call__(key)``: the whole run, ``lax.scan`` over chunks, for ``jax.jit(jax.vmap(...))``.

All seeds of a config train together: ``jax.jit(jax.vmap(trainer.run_chunk))(states)``;
:func:`rnnlab.loop.fit` does that with host-side logging between chunks.

Members, not only seeds: the optimizer values that do not change any array's shape
(:data:`HPARAMS`: the peak learning rate, the weight decay, the clipping threshold) live in the
training state (``TrainState.hparams``, float32 scalars, one per member under ``vmap``), the way
``optax.inject_hyperparams`` keeps them in the optimizer state, and every step builds its
optimizer from them (:meth:`Trainer.optimizer`). So one compiled program trains members that
differ in seed *and* in these values (:mod:`rnnlab.packing`).
"""

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rnnlab import gradients
from rnnlab.cells import make_cell
from rnnlab.cells.base import ACTIVATIONS
from rnnlab.checks import ConfigError, check_choice, check_int, check_number
from rnnlab.models import SequenceModel, count_params
from rnnlab.recurrent import BPTT_MODES, MERGES, PROJECTIONS, resolve_bptt
from rnnlab.tasks import Batch, Task, make_task

# metric names
LOSS = "loss"
GRAD_NORM = "grad_norm"
GRAD_NORM_CLIPPED = "grad_norm_clipped"
LEARNING_RATE = "learning_rate"

# the optimizer values a member carries as traced arrays (TrainState.hparams); jobs of a sweep
# that differ only in these (and in train.seed/num_seeds) can train as one program
HPARAMS = ("learning_rate", "weight_decay", "grad_clip")
# carried too when the model has dropout (model.dropout > 0): the member's dropout rate
DROPOUT = "dropout"

EVAL_STREAM = 1  # fold_in ids separating the key streams of one seed
PROBE_STREAM = 2


class TrainState(NamedTuple):
    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array  # training stream: split before every use
    eval_key: jax.Array  # fixed: the same held-out batch at every evaluation
    hparams: Any = None  # {name: float32 scalar}: this member's HPARAMS (and DROPOUT rate)


def _options(node) -> dict[str, Any]:
    """A config node (DictConfig, dataclass or dict) as a plain dict."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    return dict(node)


def build_task(cfg) -> Task:
    options = _options(cfg.task)
    return make_task(options.pop("name"), **options)


def layer_widths(cfg) -> list[int]:
    model = cfg.model
    if model.hidden_sizes:
        return [int(w) for w in model.hidden_sizes]
    check_int("model.num_layers", model.num_layers, 1)
    return [int(cfg.cell.hidden_size)] * int(model.num_layers)


def build_cells(cfg, widths: list[int] | None = None) -> tuple:
    options = _options(cfg.cell)
    name = options.pop("name")
    widths = widths if widths is not None else layer_widths(cfg)
    return tuple(make_cell(name, **{**options, "hidden_size": w}) for w in widths)


def model_param_count(model: SequenceModel, task: Task) -> int:
    """Parameters of ``model`` on ``task``'s inputs, from shapes alone (nothing is run)."""
    batch = jax.eval_shape(lambda k: task.sample(k, 2), jax.random.key(0))
    shapes = jax.eval_shape(lambda k, x, n: model.init(k, x, n)["params"], jax.random.key(0),
                            batch.x, batch.seq_lengths)
    return count_params(shapes)


def budget_width(cfg, task: Task) -> int:
    """The hidden width (the same for every layer) whose model has the parameter count
    closest to ``model.param_budget`` (Collins et al. 2017's matched-capacity comparison)."""
    budget = int(cfg.model.param_budget)
    if cfg.model.hidden_sizes:
        raise ConfigError("set model.param_budget or model.hidden_sizes, not both; got "
                         f"param_budget={budget}, hidden_sizes={list(cfg.model.hidden_sizes)}")
    layers = int(cfg.model.num_layers)

    def count(width: int) -> int:
        return model_param_count(build_model(cfg, task, build_cells(cfg, [width] * layers)),
                                 task)

    if count(1) > budget:
        raise ConfigError(f"model.param_budget={budget} is below the smallest model "
                         f"({count(1)} parameters at width 1)")
    lo, hi = 1, 2
    while count(hi) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # count is increasing in the width: bisect for the last width <= budget
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    return lo if budget - count(lo) <= count(hi) - budget else hi


def rows_per_device(cfg, members: int | None = None) -> int:
    """The members (seeds; ``members`` of a packed program) each device runs, as
    :func:`rnnlab.loop.member_layout` lays them out."""
    from rnnlab.loop import member_layout

    members = int(cfg.train.num_seeds) if members is None else int(members)
    used, rows = member_layout(members, len(jax.local_devices()), cfg.train.devices)
    return rows // used


def build_model(cfg, task: Task, cells: tuple | None = None,
                members: int | None = None) -> SequenceModel:
    """The model of ``cfg``; ``model.bptt=auto`` is resolved here for its cell and the members
    per device of its program (:func:`rnnlab.recurrent.resolve_bptt`; ``members``: a packed
    program's, default ``train.num_seeds``)."""
    m = cfg.model
    cells = cells if cells is not None else build_cells(cfg)
    bptt = str(m.bptt)
    if bptt == "auto":
        bptt = resolve_bptt(bptt, cells[0], rows_per_device(cfg, members))
    return SequenceModel(
        cells=cells,
        output_size=task.output_size,
        vocab_size=task.vocab_size,
        readout=task.readout,
        head_sizes=tuple(m.head_sizes),
        head_activation=m.head_activation,
        dropout=float(m.dropout),
        bidirectional=bool(m.bidirectional),
        merge=m.merge,
        unroll=None if m.unroll is None else int(m.unroll),
        remat=bool(m.remat),
        learn_initial_carry=bool(m.learn_initial_carry),
        projection=m.projection,
        parallel=bool(m.parallel),
        bptt=bptt,
        init_preset=str(getattr(cfg.cell, "init_preset", "rnnlab")),
    )


def global_norm(tree) -> jax.Array:
    """Euclidean norm of all leaves together (what ``clip_by_global_norm`` clips)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32)))
                        for x in jax.tree.leaves(tree)))


# ---- optimizers and schedules (registries) ---------------------------------------------------
SCHEDULES: dict[str, Callable[[Any, int], optax.Schedule]] = {
    "constant": lambda o, n: optax.constant_schedule(o.learning_rate),
    "cosine": lambda o, n: optax.cosine_decay_schedule(
        o.learning_rate, max(n, 1), alpha=o.final_lr_fraction),
    "linear": lambda o, n: optax.linear_schedule(
        o.learning_rate, o.learning_rate * o.final_lr_fraction, max(n, 1)),
    "warmup_cosine": lambda o, n: optax.warmup_cosine_decay_schedule(
        0.0, o.learning_rate, o.warmup_steps, max(n, o.warmup_steps + 1),
        end_value=o.learning_rate * o.final_lr_fraction),
}

OPTIMIZERS: dict[str, Callable[[Any, optax.Schedule], optax.GradientTransformation]] = {
    "adam": lambda o, lr: optax.adam(lr, eps=o.eps),
    "adamw": lambda o, lr: optax.adamw(lr, eps=o.eps, weight_decay=o.weight_decay),
    "rmsprop": lambda o, lr: optax.rmsprop(lr, decay=o.decay, eps=o.eps, momentum=o.momentum
                                           or None),
    "sgd": lambda o, lr: optax.sgd(lr, momentum=o.momentum or None),
}


def build_optimizer(optim, total_steps: int, hparams: dict | None = None
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax optimizer (clipping first when set) and its learning-rate schedule for the
    ``optim`` config group.

    ``hparams`` ({name: value} for :data:`HPARAMS`, floats or traced scalars) replaces those
    fields of ``optim``; the schedule is then the peak ``learning_rate`` times the schedule's
    shape for a peak of 1 (every schedule of :data:`SCHEDULES` is linear in its peak), and
    clipping is always in the chain, with ``grad_clip = inf`` meaning
    none (``g_norm < inf`` keeps every gradient as it is), so the optimizer state has the same
    structure whatever the values."""
    check_choice("optim.name", optim.name, sorted(OPTIMIZERS))
    check_choice("optim.schedule", optim.schedule, sorted(SCHEDULES))
    if hparams is None:
        schedule = SCHEDULES[optim.schedule](optim, total_steps)
    else:  # every schedule is the peak rate times its shape (optax's need Python peaks)
        shape = SCHEDULES[optim.schedule](_Replaced(optim, {"learning_rate": 1.0}), total_steps)
        peak = hparams["learning_rate"]

        def schedule(count):
            return peak * shape(count)

        optim = _Replaced(optim, hparams)
    tx = OPTIMIZERS[optim.name](optim, schedule)
    if hparams is not None:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip), tx)
    elif optim.grad_clip is not None:
        check_number("optim.grad_clip", optim.grad_clip, 0.0, low_open=True, optional=True)
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip), tx)
    return tx, schedule


class _Replaced:
    """An ``optim`` config whose fields named in ``values`` read from there instead."""

    def __init__(self, base, values: dict):
        self._base, self._values = base, values

    def __getattr__(self, name):
        if name in self._values:
            return self._values[name]
        return getattr(self._base, name)


def member_hparams(optim) -> dict[str, float]:
    """The values of :data:`HPARAMS` in an ``optim`` config group, as floats (``grad_clip``
    null: ``inf``)."""
    clip = optim.grad_clip
    return {"learning_rate": float(optim.learning_rate),
            "weight_decay": float(optim.weight_decay),
            "grad_clip": math.inf if clip is None else float(clip)}


# ---- the trainer -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trainer:
    """Pure training functions for one config; see the module docstring."""

    task: Task
    model: SequenceModel
    optim: tuple  # the optim group's fields as (name, value) pairs (hashable)
    batch_size: int
    steps: int
    chunk_size: int
    probe_batch_size: int
    eval_batch_size: int = 512

    @property
    def num_chunks(self) -> int:
        return self.steps // self.chunk_size

    @property
    def hparams(self) -> dict[str, float]:
        """The config's values of :data:`HPARAMS`, and the dropout rate (:data:`DROPOUT`)
        when the model has dropout: what :meth:`init` uses by default, and what a member
        carries in ``TrainState.hparams``."""
        values = member_hparams(self.optim_config)
        if self.model.dropout > 0:
            values[DROPOUT] = float(self.model.dropout)
        return values

    @property
    def optim_config(self):
        import types

        return types.SimpleNamespace(**dict(self.optim))

    def optimizer(self, hparams: dict) -> tuple[optax.GradientTransformation, optax.Schedule]:
        """The optimizer and schedule of a member whose :data:`HPARAMS` are ``hparams``
        (float32 scalars, traced under ``vmap``)."""
        return build_optimizer(self.optim_config, self.steps, hparams)

    def init(self, key: jax.Array, hparams: dict | None = None) -> TrainState:
        """A member's first state; ``hparams`` ({name: scalar} for the keys of
        :attr:`hparams`): its optimizer values (and dropout rate), default the config's."""
        k_params, k_train, k_eval, k_sample = jax.random.split(key, 4)
        batch = self.task.sample(k_sample, 2)
        params = self.model.init(k_params, batch.x, batch.seq_lengths)["params"]
        defaults = self.hparams
        values = defaults if hparams is None else hparams
        hp = {k: jnp.asarray(values[k], jnp.float32) for k in defaults}
        tx, _ = self.optimizer(hp)
        with jax.numpy_dtype_promotion("standard"):
            opt_state = tx.init(params)
        return TrainState(jnp.zeros((), jnp.int32), params, opt_state, k_train, k_eval, hp)

    def apply(self, params, batch: Batch, *, dropout_key=None, probes=None,
              dropout_rate=None):
        """The model's outputs for ``batch``; dropout only with ``dropout_key``, at
        ``dropout_rate`` (a member's traced rate; default the model's)."""
        variables = {"params": params}
        if probes is not None:
            variables["probes"] = probes
        rngs = None if dropout_key is None else {"dropout": dropout_key}
        return self.model.apply(variables, batch.x, batch.seq_lengths,
                                deterministic=dropout_key is None, rngs=rngs,
                                dropout_rate=dropout_rate)

    def train_step(self, state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        key, k_batch, k_dropout = jax.random.split(state.key, 3)
        batch = self.task.sample(k_batch, self.batch_size)

        def loss_fn(params):
            out = self.apply(params, batch, dropout_key=k_dropout,
                             dropout_rate=(state.hparams or {}).get(DROPOUT))
            return self.task.loss(out, batch)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        tx, schedule = self.optimizer(state.hparams)
        # optax mixes Python floats and int32 step counts; keep it working when a user (or the
        # test-suite) turns on strict dtype promotion for their own code.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            lr = jnp.asarray(schedule(state.step), jnp.float32)
        params = optax.apply_updates(state.params, updates)
        norm = global_norm(grads)
        clipped = jnp.minimum(norm, state.hparams["grad_clip"])  # inf: no clipping
        metrics = {LOSS: loss, GRAD_NORM: norm, GRAD_NORM_CLIPPED: clipped,
                   LEARNING_RATE: lr}
        return state._replace(step=state.step + 1, params=params, opt_state=opt_state,
                              key=key), metrics

    def run_chunk(self, state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """``chunk_size`` steps; metrics averaged over the chunk (``loss`` is the training
        loss), plus ``grad_norm_max``."""
        state, m = jax.lax.scan(lambda s, _: self.train_step(s), state, None,
                                length=self.chunk_size)
        out = {k: v.mean() for k, v in m.items()}
        out[LEARNING_RATE] = m[LEARNING_RATE][-1]
        out["grad_norm_max"] = m[GRAD_NORM].max()
        return state, out

    def evaluate(self, state: TrainState) -> dict[str, jax.Array]:
        batch = self.task.eval_batch(state.eval_key, self.eval_batch_size)
        return self.task.metrics(self.apply(state.params, batch), batch)

    def probe(self, state: TrainState) -> dict[str, dict[str, jax.Array]]:
        """``||dL/d carry_t||`` through time on a fixed probe batch (deterministic)."""
        batch = self.task.sample(jax.random.fold_in(state.eval_key, PROBE_STREAM),
                                 self.probe_batch_size)
        probes = gradients.probe_zeros(self.model, state.params, batch.x, batch.seq_lengths)

        def loss_fn(params, probes):
            out = self.apply(params, batch, probes=probes)
            return self.task.loss(out, batch), None

        _, _, _, g_probes = gradients.loss_and_gradients(loss_fn, state.params, probes)
        return gradients.norms_through_time(g_probes, batch.seq_lengths)

    def __call__(self, key: jax.Array):
        """The whole run as one pure function: ``(final_state, history)`` with ``history``
        the chunk metrics and evaluations stacked over chunks."""
        def chunk(state, _):
            state, train_metrics = self.run_chunk(state)
            return state, {"train": train_metrics, "eval": self.evaluate(state)}

        return jax.lax.scan(chunk, self.init(key), None, length=self.num_chunks)


# Which optimizers (``optim.name``) and schedules (``optim.schedule``) read each field of the
# optim group (:data:`OPTIMIZERS`, :data:`SCHEDULES`), and what to do instead of setting it.
OPTIM_FIELD_READERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "weight_decay": ("name", ("adamw",), "use optim=adamw for decoupled weight decay "
                     "(Loshchilov & Hutter 2019)"),
    "momentum": ("name", ("sgd", "rmsprop"), "use optim=sgd or optim=rmsprop"),
    "decay": ("name", ("rmsprop",), "it is rmsprop's squared-gradient decay"),
    "eps": ("name", ("adam", "adamw", "rmsprop"), "sgd has no epsilon"),
    "warmup_steps": ("schedule", ("warmup_cosine",), "use optim.schedule=warmup_cosine"),
    "final_lr_fraction": ("schedule", ("cosine", "linear", "warmup_cosine"),
                          "use a decaying optim.schedule (cosine, linear, warmup_cosine)"),
}


def check_optim_fields_used(optim) -> None:
    """Refuses a value of the optim group that the chosen optimizer or schedule never reads
    (:data:`OPTIM_FIELD_READERS`), such as ``optim=adam optim.weight_decay=0.1``, which would
    otherwise train exactly as without it. A value counts as set when it differs from both
    the schema's default and the chosen optimizer's preset (``conf/optim/NAME.yaml``), so a
    preset's own values (adamw's warm-up with ``optim.schedule=constant``) pass.

    Raises:
      ConfigError: naming the field, its value, what reads it and what to use instead."""
    from omegaconf import OmegaConf

    from rnnlab.config import OptimConfig, config_dir

    preset_path = config_dir() / "optim" / f"{optim.name}.yaml"
    preset = OmegaConf.load(preset_path) if preset_path.is_file() else {}
    defaults = OptimConfig()
    for field, (by, readers, instead) in OPTIM_FIELD_READERS.items():
        chosen = getattr(optim, by)
        if chosen in readers:
            continue
        value = getattr(optim, field)
        if value == getattr(defaults, field) or value == preset.get(field, None):
            continue
        raise ConfigError(f"optim.{field}={value} has no effect with optim.{by}={chosen} (read "
                          f"only by optim.{by}={'|'.join(readers)}); {instead}, or leave it "
                          f"at {getattr(defaults, field)}")


def validate(cfg) -> None:
    """Checks every value of the ``model``, ``optim``, ``train``, ``gradients`` and ``logger``
    groups that the schema's types cannot (ranges, names, relations between fields).

    Raises:
      ConfigError: naming the field, the value and what is accepted. (Cell and task options
        are checked when the cell and task are built.)"""
    t, g, m, o = cfg.train, cfg.gradients, cfg.model, cfg.optim
    check_int("train.steps", t.steps, 1)
    check_int("train.batch_size", t.batch_size, 1)
    check_int("train.num_seeds", t.num_seeds, 1)
    check_int("train.seed", t.seed, 0)
    check_int("train.log_every", t.log_every, 1, t.steps,
              why=f" (train.steps={t.steps}): steps per compiled chunk")
    if t.steps % t.log_every:
        raise ConfigError(f"train.steps={t.steps} must be a multiple of "
                          f"train.log_every={t.log_every}")
    check_int("train.eval_batch_size", t.eval_batch_size, 1)
    check_int("train.early_stopping_patience", t.early_stopping_patience, 1, optional=True,
              why=" (evaluations without improvement)")
    check_number("train.divergence_factor", t.divergence_factor, 1.0, low_open=True,
                 optional=True, why=" (times the initial loss)")
    check_int("train.checkpoint_every", t.checkpoint_every, 0, optional=True,
              why=" (0: no checkpoints)")
    if t.checkpoint_every and t.checkpoint_every % t.log_every:
        raise ConfigError(f"train.checkpoint_every={t.checkpoint_every} must be a multiple of "
                          f"train.log_every={t.log_every} (checkpoints are written between "
                          f"chunks)")
    check_int("train.checkpoint_keep", t.checkpoint_keep, 1)
    if t.devices is not None:
        n_devices = len(jax.local_devices())
        check_int("train.devices", t.devices, 1, n_devices, why=f" (local devices: {n_devices})")
    check_int("gradients.batch_size", g.batch_size, 1)
    check_int("gradients.every", g.every, 0, why=" (0: at initialisation and the end only)")
    if g.enabled and g.every and g.every < t.steps and g.every % t.log_every:
        raise ConfigError(f"gradients.every={g.every} must be a multiple of "
                          f"train.log_every={t.log_every} (or 0: at initialisation and the "
                          f"end only)")
    check_int("model.num_layers", m.num_layers, 1)
    if m.hidden_sizes is not None:
        if not m.hidden_sizes:
            raise ConfigError("model.hidden_sizes must be null or a non-empty list of widths; "
                              "got []")
        for i, w in enumerate(m.hidden_sizes):
            check_int(f"model.hidden_sizes[{i}]", w, 1)
        if m.num_layers not in (1, len(m.hidden_sizes)):
            raise ConfigError(f"model.num_layers={m.num_layers} disagrees with "
                              f"model.hidden_sizes={list(m.hidden_sizes)} "
                              f"({len(m.hidden_sizes)} layers); set one of them")
    check_int("model.param_budget", m.param_budget, 1, optional=True)
    check_choice("model.merge", m.merge, MERGES)
    check_number("model.dropout", m.dropout, 0.0, 1.0, high_open=True)
    for i, w in enumerate(m.head_sizes):
        check_int(f"model.head_sizes[{i}]", w, 1)
    check_choice("model.head_activation", m.head_activation, sorted(ACTIVATIONS))
    check_int("model.unroll", m.unroll, 1, optional=True,
              why=" (steps per scan iteration; null: the backend's default)")
    check_choice("model.projection", m.projection, PROJECTIONS)
    check_choice("model.bptt", m.bptt, BPTT_MODES)
    if m.bptt == "fused" and not build_cells(cfg, [1])[0].fusable:
        raise ConfigError(f"model.bptt=fused needs a cell whose step splits into h @ U and a "
                          f"pointwise update (Cell.update: lstm, peephole, cifg, gru with "
                          f"reset_after, rnn); got cell={cfg.cell.name}; use model.bptt=auto "
                          f"or autodiff")
    if m.parallel:
        from rnnlab.cells import get_cell_class

        if not hasattr(get_cell_class(cfg.cell.name), "scan_parallel"):
            raise ConfigError(f"model.parallel=true needs a cell with a parallel mode "
                              f"(mingru, minlstm); got cell={cfg.cell.name}")
    check_choice("optim.name", o.name, sorted(OPTIMIZERS))
    check_choice("optim.schedule", o.schedule, sorted(SCHEDULES))
    check_number("optim.learning_rate", o.learning_rate, 0.0, low_open=True)
    if o.schedule == "warmup_cosine":  # the only schedule that reads it
        check_int("optim.warmup_steps", o.warmup_steps, 0, t.steps - 1,
                  why=f" (fewer than train.steps={t.steps})")
    else:
        check_int("optim.warmup_steps", o.warmup_steps, 0)
    check_number("optim.final_lr_fraction", o.final_lr_fraction, 0.0, 1.0,
                 why=" (the final learning rate as a fraction of the peak)")
    check_number("optim.grad_clip", o.grad_clip, 0.0, low_open=True, optional=True)
    check_number("optim.weight_decay", o.weight_decay, 0.0)
    check_number("optim.momentum", o.momentum, 0.0, 1.0, high_open=True)
    check_number("optim.decay", o.decay, 0.0, 1.0, low_open=True, high_open=True)
    check_number("optim.eps", o.eps, 0.0, low_open=True)
    check_optim_fields_used(o)
    from rnnlab.logging import WANDB_MODES

    check_choice("logger.wandb.mode", cfg.logger.wandb.mode, WANDB_MODES)
    check_number("logger.wandb.init_timeout", cfg.logger.wandb.init_timeout, 0.0,
                 low_open=True, optional=True, why=" (seconds)")


def check_outside_cells(model) -> None:
    """Runs :func:`rnnlab.testing.check_runnable` (shapes only) on each cell of ``model`` whose
    class does not ship with rnnlab (a class path, a plugin), before anything is compiled.

    Raises:
      ConfigError: the broken rule, in one line (``cell=...: rule carry_shape ...``)."""
    from rnnlab import testing

    seen = set()
    for cell in model.cells:
        cls = type(cell)
        if cls.__module__.split(".")[0] == "rnnlab" or cls in seen:
            continue
        seen.add(cls)
        try:
            testing.check_runnable(cell, input_size=3)
        except AssertionError as err:
            first = str(err).strip().splitlines()[0]
            name = getattr(cls, "registered_name", cls.__qualname__)
            raise ConfigError(f"cell={name}: {first} (rnnlab.testing.check_cell checks "
                              f"every rule: docs/new_cell.md)") from err


def make_train(cfg) -> Trainer:
    """Builds the :class:`Trainer` for a run config (see :mod:`rnnlab.config`).

    Raises:
      ConfigError: a value that cannot run (see :func:`validate`); cells and tasks raise
        ``ValueError``/``TypeError`` naming their option."""
    validate(cfg)
    t, g = cfg.train, cfg.gradients
    chunk = int(t.log_every)
    task = build_task(cfg)
    cells = None
    if cfg.model.param_budget is not None:
        cells = build_cells(cfg, [budget_width(cfg, task)] * int(cfg.model.num_layers))
    model = build_model(cfg, task, cells)
    check_outside_cells(model)
    build_optimizer(cfg.optim, int(t.steps))  # refuses a bad name or value now
    return Trainer(task=task, model=model, optim=tuple(_options(cfg.optim).items()),
                   batch_size=int(t.batch_size), steps=int(t.steps), chunk_size=chunk,
                   probe_batch_size=int(g.batch_size), eval_batch_size=int(t.eval_batch_size))


def seed_keys(cfg) -> jax.Array:
    """One key per seed: ``train.seed, train.seed + 1, ...``."""
    seeds = jnp.arange(cfg.train.seed, cfg.train.seed + cfg.train.num_seeds)
    return jax.vmap(jax.random.key)(seeds)


def _state_shapes(trainer: Trainer):
    """The training state of one seed as shapes (nothing is allocated)."""
    return jax.eval_shape(trainer.init, jax.random.key(0))


def param_count(trainer: Trainer) -> int:
    return count_params(_state_shapes(trainer).params)


def _nbytes(tree) -> int:
    return int(sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)
                   if hasattr(x, "dtype") and x.dtype != jax.dtypes.float0
                   and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)))


def state_bytes(trainer: Trainer) -> tuple[int, int]:
    """``(training state, parameters)`` of one seed, in bytes, from shapes alone (nothing is
    allocated): the state is the parameters, the optimizer's state (Adam: two moments of the
    parameters' size) and the counters."""
    shapes = _state_shapes(trainer)
    return _nbytes(shapes), _nbytes(shapes.params)


def training_bytes(trainer: Trainer, num_seeds: int) -> int:
    """The training state and the gradients (the parameters' size) of ``num_seeds`` seeds, in
    bytes: a lower bound of a run's memory (the activations saved for BPTT come on top)."""
    state, params = state_bytes(trainer)
    return (state + params) * int(num_seeds)


def device_memory_bytes() -> int | None:
    """The memory the default backend's local devices hold, in bytes: the machine's physical
    memory on the CPU (its devices share it), the sum of each accelerator's ``bytes_limit``
    elsewhere; ``None`` when unknown."""
    try:
        if jax.default_backend() == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
        return int(sum(limits)) if limits and all(limits) else None
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None


def check_memory(trainer: Trainer, num_seeds: int) -> None:
    """Refuses a run whose training state and gradients alone (:func:`training_bytes`), for
    every seed, exceed the devices' memory (:func:`device_memory_bytes`): it could only fail
    when the state is allocated, after the run folder is written.

    Raises:
      ConfigError: naming the widths, the parameter count, the bytes needed and held."""
    have = device_memory_bytes()
    if not have:
        return
    need = training_bytes(trainer, num_seeds)
    if need > have:
        widths = [c.hidden_size for c in trainer.model.cells]
        gib = 2.0 ** 30
        raise ConfigError(
            f"the model is too large for this machine: widths {widths} give "
            f"{param_count(trainer):,} parameters per seed, and the parameters, gradients and "
            f"optimizer state of {num_seeds} seed(s) alone need {need / gib:.1f} GiB, more "
            f"than the {have / gib:.1f} GiB of memory of the {jax.default_backend()} "
            f"device(s); lower cell.hidden_size (or model.hidden_sizes), model.num_layers or "
            f"train.num_seeds")
