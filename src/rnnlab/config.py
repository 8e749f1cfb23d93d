"""Typed config schemas, registered in Hydra's ConfigStore.

Every group (``cell``, ``task``, ``model``, ``optim``, ``train``, ``logger``) has a dataclass
schema, so a misspelt key or a value of the wrong type fails when the config is composed,
with Hydra's message naming the key; on the command line :func:`check_override_keys` refuses
the common ones first, in one line. Cell and task schemas are generated from the registries
(one schema per registered cell or task), so a new cell needs no change here.

:func:`compose` builds the same config the command line would, for notebooks and tests.
"""

import dataclasses
import secrets
import sys
import types
import typing
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from rnnlab import plugins
from rnnlab.cells import CELLS, cell_schema
from rnnlab.tasks import TASKS, task_schema


@dataclasses.dataclass
class ModelConfig:
    num_layers: int = 1  # stacked recurrent layers (>= 1)
    hidden_sizes: list[int] | None = None  # per-layer widths; null: cell.hidden_size each
    param_budget: int | None = None  # size hidden widths to about this many parameters
    bidirectional: bool = False  # add a reversed layer beside each layer
    merge: str = "concat"  # concat | sum: how the two directions combine
    dropout: float = 0.0  # rate between recurrent layers and before the head, in [0, 1)
    head_sizes: list[int] = dataclasses.field(default_factory=list)  # dense layers before output
    head_activation: str = "relu"  # activation of the head_sizes layers
    learn_initial_carry: bool = False  # learn the initial carry instead of zeros
    unroll: int | None = None  # steps per scan iteration (>= 1); null: backend default
    remat: bool = False  # recompute steps in the backward pass to save memory
    projection: str = "auto"  # auto | hoisted | in_scan: where the input matmul runs
    parallel: bool = False  # whole-sequence associative scan (mingru, minlstm) instead of steps
    bptt: str = "auto"  # auto | fused | autodiff: how the backward pass through time runs


@dataclasses.dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | rmsprop | sgd
    learning_rate: float = 1e-3  # peak learning rate
    schedule: str = "constant"  # constant | cosine | linear | warmup_cosine
    warmup_steps: int = 0  # linear warm-up steps (warmup_cosine)
    final_lr_fraction: float = 0.0  # end learning rate as a fraction of the peak (decays)
    grad_clip: float | None = 1.0  # clip the global gradient norm to this; null: no clipping
    weight_decay: float = 0.0  # decoupled weight decay (adamw)
    momentum: float = 0.0  # momentum (sgd, rmsprop)
    decay: float = 0.9  # rmsprop's squared-gradient decay (Keras rho)
    eps: float = 1e-7  # rmsprop/adam epsilon (Keras default 1e-7)


@dataclasses.dataclass
class TrainConfig:
    steps: int = 1000  # optimizer updates per seed
    batch_size: int = 64  # sequences per update
    num_seeds: int = 3  # seeds trained together in one jitted, vmapped program
    seed: int = 0  # first seed; seeds are seed, seed+1, ...
    log_every: int = 100  # steps per compiled chunk; metrics and evaluation between chunks
    eval_batch_size: int = 512  # held-out sequences per evaluation
    early_stopping_patience: int | None = None  # evaluations without val improvement; null: off
    divergence_factor: float | None = 100.0  # a seed diverges when its training loss exceeds
    # this multiple of its initial held-out loss (or is not finite); null: non-finite only
    checkpoint_every: int | None = None  # steps between checkpoints (multiple of log_every);
    # null: every 10 chunks; 0: no checkpoints
    checkpoint_keep: int = 2  # checkpoints kept (the newest)
    resume: bool = True  # continue an unfinished run found in the run folder; false: afresh
    devices: int | None = None  # local devices the seeds are sharded over (padded with
    # computed copies of seed 0 to a multiple of them); null: the fewest seeds per device
    compilation_cache: str | None = "${oc.env:XDG_CACHE_HOME,'~/.cache'}/rnnlab/jax"  # JAX's
    # persistent compilation cache (programs compiled once per shape, reused by later runs and
    # sweep jobs), under $XDG_CACHE_HOME (else ~/.cache); null: off


@dataclasses.dataclass
class GradientsConfig:
    enabled: bool = True  # log ||dL/dh_t|| through time
    every: int = 500  # steps between measurements (a multiple of train.log_every); 0: init, end
    batch_size: int = 64  # sequences per measurement


@dataclasses.dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "rnnlab"  # W&B project
    entity: str | None = None  # W&B entity (team or user); null: the default
    group: str | None = None  # W&B group; null: the sweep folder's name
    tags: list[str] = dataclasses.field(default_factory=list)  # extra W&B tags
    init_timeout: float = 15.0  # seconds to wait for the W&B server (online mode), > 0


@dataclasses.dataclass
class LoggerConfig:
    progress: bool = True  # show a progress bar
    plots: bool = True  # write learning-curve and gradient plots into the run folder
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)


@dataclasses.dataclass
class RunConfig:
    cell: Any = MISSING
    task: Any = MISSING
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    gradients: GradientsConfig = dataclasses.field(default_factory=GradientsConfig)
    logger: LoggerConfig = dataclasses.field(default_factory=LoggerConfig)


def _shipped(folder: str) -> Path:
    """``rnnlab/FOLDER`` in an installed wheel, else ``FOLDER`` at the checkout's root."""
    installed = Path(__file__).resolve().parent / folder
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / folder


def config_dir() -> Path:
    """The shipped config tree (``conf/`` in a checkout, ``rnnlab/conf`` when installed)."""
    return _shipped("conf")


def experiments_dir() -> Path | None:
    """Experiment presets, ``experiments/NAME/config.yaml``; None where none ship."""
    path = _shipped("experiments")
    return path if path.is_dir() else None


def _random_id() -> str:
    """Six hex digits from the OS's random source: the part of a run folder's name that keeps
    runs (and sweeps) started in the same second, on one machine or many, apart."""
    return secrets.token_hex(3)


def data_file(name: str) -> str:
    """The absolute path of ``name`` in the data shipped with rnnlab (``rnnlab/data``), for
    presets that read a CSV: ``task.path: ${rnnlab_data:pairs.csv}`` works from any folder
    and from an installed wheel. Raises ``ValueError`` when no such file ships."""
    path = Path(__file__).resolve().parent / "data" / name
    if not path.is_file():
        shipped = sorted(p.name for p in path.parent.glob("*.csv"))
        raise ValueError(f"rnnlab_data:{name}: no such file in {path.parent}; shipped: {shipped}")
    return str(path)


_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "train": TrainConfig,
             "gradients": GradientsConfig, "logger": LoggerConfig}
# the run config's top-level keys and groups (a key added with + beside them is refused)
_TOP_LEVEL = ("cell", "task", *_SECTIONS, "experiment", "hydra")


def _schemas(section: str) -> list[type]:
    """The dataclass schemas a config section may have: every registered cell's or task's
    (the option chosen may come from a preset), or the section's one schema."""
    if section == "cell":
        return [cell_schema(n) for n in CELLS]
    if section == "task":
        return [task_schema(n) for n in TASKS]
    return [_SECTIONS[section]]


def _leaf(schema, path: list[str]):
    """``(found, type)`` of ``path`` in ``schema``, or ``(False, names accepted where the path
    leaves the schema)``."""
    for i, name in enumerate(path):
        fields = {f.name: f.type for f in dataclasses.fields(schema)}
        if name not in fields:
            return False, sorted(fields)
        tp = fields[name]
        if i + 1 < len(path):
            if not dataclasses.is_dataclass(tp):
                return False, []
            schema = tp
    return True, tp


def _number_kind(tp) -> str | None:
    """``int`` or ``float`` for a field typed as one (optional or not), else None."""
    args = [a for a in getattr(tp, "__args__", (tp,)) if a is not type(None)]
    if len(args) == 1 and args[0] in (int, float):
        return args[0].__name__
    return None


def _refusal(key: str, value, kind: str, text: str) -> str | None:
    """Why ``value`` (written ``text``) cannot be ``key``'s ``kind`` (int or float)."""
    if value is None or (isinstance(value, str) and "${" in value):
        return None  # null (the schema says whether it may be) and interpolations: Hydra's
    if kind == "int" and not isinstance(value, bool):
        if isinstance(value, int):
            return None
        if isinstance(value, float) and value.is_integer():
            return f"{key}={text}: not an int; write {key}={int(value)}"
        if isinstance(value, str):
            try:
                int(value)
                return None
            except ValueError:
                pass
        return f"{key}={text}: not an int; {key} takes a whole number"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            float(value)
            return None
        except ValueError:
            pass
    what = "a whole number" if kind == "int" else "a float (e.g. 1e-3)"
    return f"{key}={text}: not a number; {key} takes {what}"


def _overrides(args: list[str]):
    """``(Hydra override, its argument)`` for each command-line argument that parses as an
    override; flags, their values (``--cfg job``) and bad syntax (Hydra's own message says
    where) are passed over."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            (o,) = parser.parse_overrides([arg])
        except Exception:
            continue
        yield o, arg


def _chosen_options(args: list[str]) -> dict[str, list[str]]:
    """The registered cells and tasks a command line surely composes: its ``cell=``
    (``task=``) values (a sweep's too), or the default (``conf/config.yaml``: lstm, copy) when
    it gives none, chooses no experiment preset and no config of its own (``--config-name``,
    ``--config-dir``, ``--config-path``), which may choose them; [] when unsure."""
    from rnnlab.registry import chosen_names

    preset = any(a.lstrip("+~").startswith("experiment=")
                 or a.split("=", 1)[0] in ("--config-name", "-cn", "--config-dir", "-cd",
                                           "--config-path", "-cp") for a in args)
    out = {}
    for section, registry, default in (("cell", CELLS, "lstm"), ("task", TASKS, "copy")):
        names = chosen_names(args, section) or ([] if preset else [default])
        out[section] = names if all(n in registry for n in names) else []
    return out


def _schema_type(tp, kind: type) -> bool:
    """Whether ``tp`` is ``kind`` (bool; list: a list or tuple type) or an optional one."""
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    inner = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
    kinds = (list, tuple) if kind is list else (kind,)
    return len(inner) == 1 and (typing.get_origin(inner[0]) or inner[0]) in kinds


def check_override_keys(args: list[str]) -> str | None:
    """The error for a command-line override (``train.stepz=100``, ``train.steps=abc``,
    ``train.steps=1e3``) that composing the config would refuse or silently bend: a key no
    schema of its section has (naming the closest one and those accepted), or a key the
    chosen cell (task) does not have (``cell=lstm cell.reset_after=false``: the GRU's); a value
    that is not a number where the schema wants an int or a float, not ``true``/``false``
    where it wants a boolean (``model.bidirectional=5`` would become true), or not a list
    where it wants one (``task.features=Close``: write ``[Close]``), sweep values included;
    ``hydra.launcher=NAME`` for the group ``hydra/launcher=NAME``. None when none is found:
    other mistakes are left to Hydra's composition. Writes nothing, composes nothing. Without
    ``cell=`` on the command line, a preset (``+experiment=``) may choose the cell, so then a
    key is unknown only if no registered cell has it (the same for tasks)."""
    import difflib

    chosen = _chosen_options(args)
    for o, arg in _overrides(args):
        parts = o.key_or_group.split(".")
        if (o.key_or_group in ("hydra.launcher", "hydra.sweeper") and not o.is_delete()
                and isinstance(o.value(), str)):
            group = o.key_or_group.replace(".", "/")
            return (f"{arg}: {o.key_or_group} is a config group; choose it with "
                    f"{group}={o.value()} (a slash)")
        added = o.is_add() or o.is_force_add()
        if (added and len(parts) == 1 and not o.package and "/" not in o.key_or_group
                and o.key_or_group not in _TOP_LEVEL):
            sections = ", ".join(k for k in _TOP_LEVEL if k not in ("hydra", "experiment"))
            return (f"{arg}: the config has no section {o.key_or_group!r} (a key added with + "
                    f"is read by nothing); its sections: {sections}, and +experiment=NAME "
                    f"adds a preset")
        # a key added with + (or ++) to a section of rnnlab's own schema is checked like a
        # set one: Hydra takes an unknown one silently and nothing reads it; the cell's and
        # the task's keys added with + are refused when the cell or task is built
        if (o.is_delete() or o.package or len(parts) < 2
                or parts[0] not in ("cell", "task", *_SECTIONS)
                or (added and parts[0] in ("cell", "task"))):
            continue
        key = o.key_or_group
        found = [_leaf(schema, parts[1:]) for schema in _schemas(parts[0])]
        types = [tp for ok, tp in found if ok]
        if not types:
            accepted = sorted({n for _, names in found for n in names})
            close = difflib.get_close_matches(parts[-1], accepted, n=1)
            where = ".".join(parts[:-1])
            head = (f"no {where} has the key {parts[-1]!r}"
                    if len(parts) == 2 and parts[0] in ("cell", "task")
                    else f"no such key in {where}")
            if len(parts) == 2 and chosen.get(parts[0]):  # the chosen ones' keys only
                accepted = sorted({n for name in chosen[parts[0]]
                                   for n in _leaf(_schema_of(parts[0], name), ["?"])[1]})
                close = difflib.get_close_matches(parts[-1], accepted, n=1)
            return (f"{key}: {head}"
                    + (f"; did you mean {where}.{close[0]}?" if close else "")
                    + ((" Accepted: " if close else "; accepted: ") + ", ".join(accepted)
                       if accepted else ""))
        if len(parts) == 2 and chosen.get(parts[0]):
            for name in chosen[parts[0]]:
                ok, names = _leaf(_schema_of(parts[0], name), parts[1:])
                if not ok:
                    close = difflib.get_close_matches(parts[-1], names, n=1)
                    return (f"{key}: {parts[0]} {name!r} has no option {parts[-1]!r}"
                            + (f"; did you mean {parts[0]}.{close[0]}?" if close else "")
                            + (" Accepted: " if close else "; accepted: ")
                            + ", ".join(names))
        values = _values(o, arg)
        if values is None:
            continue
        for kind, hint in ((bool, "true or false"), (list, "a list")):
            if types and all(_schema_type(tp, kind) for tp in types):
                for value, text in values:
                    message = _not_a(key, value, text, kind, hint)
                    if message:
                        return message
        kinds = {_number_kind(tp) for tp in types}
        if len(kinds) != 1 or None in kinds:
            continue
        kind = kinds.pop()
        for value, text in values:
            message = _refusal(key, value, kind, text)
            if message:
                return message
    return None


def check_group_choices(args: list[str]) -> str | None:
    """The error for a config group chosen on the command line that has no such option
    (``cell=lstn``, ``task=forcast``, ``optim=adamm``, ``+experiment=nosuch``, a sweep's
    values too), naming the options and the closest one; None when all exist, or when the
    command line may bring options of its own (``--config-dir``/``-cd``, ``--config-path``/``-cp``,
    ``hydra.searchpath``). A class path (``cell=mypkg.cells.MyCell``) is left to the plugin
    loader. Writes nothing, composes nothing (Hydra's own message is many lines, exit 1)."""
    import difflib

    if any(a.split("=", 1)[0] in ("--config-dir", "-cd", "--config-path", "-cp")
           or a.lstrip("+~").startswith("hydra.searchpath") for a in args):
        return None
    for o, arg in _overrides(args):
        group = o.key_or_group
        if (o.is_delete() or o.package or group == "gradients"
                or group not in ("cell", "task", "experiment", *_SECTIONS)):
            continue
        if group in ("cell", "task"):
            names = sorted(CELLS if group == "cell" else TASKS)
        elif group == "experiment":
            exp = experiments_dir()
            names = sorted(p.parent.name for p in exp.glob("*/config.yaml")) if exp else []
        else:
            names = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        for value, _ in _values(o, arg) or []:
            if not isinstance(value, str) or "." in value or "${" in value or value in names:
                continue
            close = difflib.get_close_matches(value, names, n=1)
            key = arg.split("=", 1)[0]  # as written: +experiment
            return (f"{key}={value}: no such {group}"
                    + (f"; did you mean {key}={close[0]}? Options" if close else
                       "; options") + f": {', '.join(names)}"
                    + (" (a cell of your own: cell=package.module.Class)"
                       if group == "cell" else ""))
    return None


def _schema_of(section: str, name: str):
    return cell_schema(name) if section == "cell" else task_schema(name)


def _values(o, arg: str):
    """``[(value, as written)]`` of an override (each of a sweep's), or None for a sweep that
    cannot be enumerated (a sweeper's interval)."""
    if o.is_sweep_override():
        try:
            return [(v, str(v)) for v in o.sweep_iterator()]
        except Exception:  # interval sweeps (a sweeper's): not enumerable
            return None
    return [(o.value(), arg.split("=", 1)[1])]


def _not_a(key: str, value, text: str, kind: type, hint: str) -> str | None:
    """Why ``value`` is not a ``kind`` (bool or list) for ``key``, or None (null and
    interpolations are left to the schema)."""
    if value is None or (isinstance(value, str) and "${" in value):
        return None
    if kind is bool and not isinstance(value, bool):
        return f"{key}={text}: not a boolean; write {key}=true or {key}=false"
    if kind is list and not isinstance(value, list | tuple):
        return f"{key}={text}: {key} takes a list; write {key}=[{text}]"
    return None


def check_width_overrides(args: list[str]) -> str | None:
    """The error for a command line that sets ``cell.hidden_size`` beside
    ``model.param_budget`` (which chooses the widths) or ``model.hidden_sizes`` (which gives
    them): the width would be ignored. None otherwise."""
    given = {o.key_or_group: arg.split("=", 1)[1] for o, arg in _overrides(args)
             if not (o.is_delete() or o.package)}
    budget = given.get("model.param_budget")
    if budget not in (None, "null") and "cell.hidden_size" in given:
        return (f"model.param_budget={budget} chooses the hidden widths, so "
                f"cell.hidden_size={given['cell.hidden_size']} would be ignored; give one of "
                "the two")
    sizes = given.get("model.hidden_sizes")
    if sizes not in (None, "null") and "cell.hidden_size" in given:
        return (f"model.hidden_sizes={sizes} gives every layer's width, so "
                f"cell.hidden_size={given['cell.hidden_size']} would be ignored; give one of "
                "the two")
    return None


def folder_name(name: str) -> str:
    """``name`` as a part of a folder name: runs of characters other than letters, digits,
    ``.``, ``-`` and ``_`` (the ``:`` of a class path ``pkg.mod:Cell``, a ``/``) become one
    ``.`` (``pkg.mod.Cell``). The ``rnnlab_slug`` resolver of the run-folder patterns."""
    import re

    return re.sub(r"[^\w.\-]+", ".", str(name)).strip(".") or "_"


def register_configs(overrides: list[str] | None = None) -> None:
    """Stores the schemas (and the experiment presets) in Hydra's ConfigStore, after loading
    the cell and task plugins and the class paths that ``overrides`` (default: the command
    line, ``sys.argv[1:]``) choose, e.g. ``cell=mypkg.cells.MyCell`` (see :mod:`rnnlab.plugins`),
    and registers three resolvers: ``rnnlab_id`` in the run-folder names (cached per config, so
    every reading of ``hydra.run.dir`` within one run, and every job of a sweep, sees the same
    id), ``rnnlab_data`` (:func:`data_file`) and ``rnnlab_slug`` (:func:`folder_name`)."""
    plugins.prepare(sys.argv[1:] if overrides is None else list(overrides))
    if not OmegaConf.has_resolver("rnnlab_id"):
        OmegaConf.register_new_resolver("rnnlab_id", _random_id, use_cache=True)
    if not OmegaConf.has_resolver("rnnlab_data"):
        OmegaConf.register_new_resolver("rnnlab_data", data_file)
    if not OmegaConf.has_resolver("rnnlab_slug"):
        OmegaConf.register_new_resolver("rnnlab_slug", folder_name)
    cs = ConfigStore.instance()
    cs.store(name="rnnlab_schema", node=RunConfig)
    for name in CELLS:
        cs.store(group="schema/cell", name=name, node=cell_schema(name))
    for name in TASKS:
        cs.store(group="schema/task", name=name, node=task_schema(name))
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/optim", name="optim", node=OptimConfig)
    cs.store(group="schema/train", name="train", node=TrainConfig)
    cs.store(group="schema/logger", name="logger", node=LoggerConfig)
    plugins.store(cs, config_dir())
    exp = experiments_dir()
    if exp is not None:
        for preset in sorted(exp.glob("*/config.yaml")):
            node = OmegaConf.load(preset)
            cs.store(group="experiment", name=preset.parent.name, node=node, package="_global_")
    from rnnlab.launchers import register_presets

    register_presets()  # conf/hydra/{launcher,sweeper}/*.yaml over the plugins' own configs


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The run config for these command-line overrides, e.g. ``["cell=gru"]``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs(list(overrides or []))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []))
