"""Plugins for the config tree: cells and tasks from other packages (see
:mod:`rnnlab.registry` for the three ways they arrive).

:func:`prepare` loads the entry points and ``RNNLAB_PLUGINS`` modules of both registries and
registers the class paths a command line chooses (``cell=mypkg.cells.MyCell``); :func:`store`
puts a config group option (``cell/NAME``, ``task/NAME``) into Hydra's ConfigStore for every
registered name that has no yaml in ``conf/``, made from its schema, so ``cell=NAME`` composes
with the class's own defaults and rejects unknown options. Both are called by
:func:`rnnlab.config.register_configs`.
"""

from pathlib import Path

from hydra.core.config_store import ConfigStore

from rnnlab.cells.registry import CELL_REGISTRY
from rnnlab.registry import PluginError, Registry, chosen_names, is_class_path
from rnnlab.tasks.base import TASK_REGISTRY

GROUPS: dict[str, Registry] = {"cell": CELL_REGISTRY, "task": TASK_REGISTRY}


def prepare(overrides: list[str]) -> None:
    """Loads every registry's plugins and registers the class paths that ``overrides``
    choose for the ``cell`` and ``task`` groups.

    Raises:
      rnnlab.registry.PluginError: a plugin fails to load or is not a valid class."""
    for group, registry in GROUPS.items():
        registry.load_plugins()
        for name in chosen_names(overrides, group):
            if name not in registry.entries and name in registry.plugin_errors:
                raise PluginError(f"{group}={name}: {registry.plugin_errors[name]}")
            if name not in registry.entries and is_class_path(name):
                registry.register_path(name)


def store(cs: ConfigStore, conf_dir: Path) -> None:
    """Stores ``GROUP/NAME`` (the schema, defaults included) for each registered name without
    a ``conf/GROUP/NAME.yaml``; a yaml, where one exists, stays the group option."""
    for group, registry in GROUPS.items():
        for name in list(registry.entries):
            if not (conf_dir / group / f"{name}.yaml").exists():
                cs.store(group=group, name=name, node=registry.schema(name))
