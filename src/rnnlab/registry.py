"""Name -> class registries (cells, tasks): one implementation of registering, looking up,
building with named options, deriving a Hydra config schema from a dataclass, and loading
plugins from other packages.

Plugins: a cell or task can live in any package, and reaches a registry in one of three ways.

1. **Entry points** (an installed package): in its ``pyproject.toml``::

       [project.entry-points."rnnlab.cells"]
       mgu2 = "mypkg.cells:MyCell"      # a class: registered under the entry point's name
       more = "mypkg.more_cells"        # a module: importing it runs its @register_cell

   (group ``rnnlab.tasks`` for tasks). They are loaded by :func:`load_plugins`, which
   :func:`rnnlab.config.register_configs` calls before it stores the config schemas, and on
   any failed look-up of a name.
2. **``RNNLAB_PLUGINS``** (nothing installed): a comma-separated list of importable modules
   (``RNNLAB_PLUGINS=mypkg.cells,mypkg.tasks``), imported by :func:`load_plugins`; their
   ``@register_cell`` / ``@register_task`` decorators register what they define.
3. **A class path as the name** (nothing installed, nothing registered):
   ``cell=mypkg.cells.MyCell`` (or ``mypkg.cells:MyCell``) on the command line. The path is
   imported, and the class registered under that path, when the config is composed or the
   name is looked up. This is rnnlab's form of Hydra's ``_target_``: the class is known before
   the config is composed, so its schema (derived from its dataclass fields, as for the
   built-in cells) rejects a misspelt option at compose time.

In every case the class must be a dataclass (and, for cells, a subclass of
:class:`rnnlab.cells.Cell`); anything else is refused with a message naming the plugin.
"""

import dataclasses
import importlib
import importlib.metadata
import os
import sys
import typing
from typing import Any

PLUGINS_ENV = "RNNLAB_PLUGINS"  # comma-separated modules imported by load_plugins


class PluginError(ImportError):
    """A plugin (entry point, ``RNNLAB_PLUGINS`` module or class path) could not be loaded or
    is not a valid cell or task."""


def is_class_path(name: str) -> bool:
    """``"mypkg.cells.MyCell"`` or ``"mypkg.cells:MyCell"``: a name that is a class path (an
    interpolation, ``${oc.env:MYCELL,gru}``, is not: Hydra resolves it)."""
    return isinstance(name, str) and ("." in name or ":" in name) and "${" not in name


def import_object(path: str, what: str):
    """The object at ``"pkg.module.Attr"`` or ``"pkg.module:Attr"``.

    Raises:
      PluginError: the module cannot be imported or has no such attribute."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise PluginError(f"{what}={path!r} is not a class path; expected 'package.module.Class' "
                          "or 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PluginError(f"{what}={path!r}: cannot import module {module_name!r} ({err}); is "
                          "its package installed or on PYTHONPATH?") from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{what}={path!r}: module {module_name!r} has no attribute "
                          f"{attr!r}") from None


class Registry:
    """Registered dataclasses of one kind (``"cell"``, ``"task"``).

    ``entries`` is the plain ``{name: class}`` dict; ``register(name)`` is a class decorator
    that also sets ``cls.registered_name``. ``base``, when given, is the class every entry must
    subclass. Entry points are read from the group ``rnnlab.{kind}s``."""

    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self.entries: dict[str, type] = {}
        self.entry_point_group = f"rnnlab.{kind}s"
        self._plugins_loaded = False
        # entry points that failed to load: {name: message}; choosing one raises the message
        self.plugin_errors: dict[str, str] = {}
        # (RNNLAB_PLUGINS, the error of one of its modules): raised again while it is unchanged
        self._load_error: tuple[str, PluginError] | None = None

    # ---- registering ------------------------------------------------------------------------
    def register(self, name: str):
        def wrap(cls):
            self._check_class(cls, f"{self.kind} {name!r}")
            if name in self.entries and self.entries[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered to "
                                 f"{self.entries[name]}")
            self.entries[name] = cls
            if "registered_name" not in vars(cls):  # a class keeps its first (own) name
                cls.registered_name = name
            return cls

        return wrap

    def _check_class(self, cls, what: str) -> None:
        if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
            raise PluginError(f"{what} must be a dataclass (decorate it with "
                              f"@dataclasses.dataclass(frozen=True)); got {cls!r}")
        if self.base is not None and not issubclass(cls, self.base):
            raise PluginError(f"{what} must subclass {self.base.__module__}."
                              f"{self.base.__qualname__}; got {cls.__module__}."
                              f"{cls.__qualname__}")

    def register_path(self, path: str) -> type:
        """Imports the class at ``path`` and registers it under ``path`` (once)."""
        if path in self.entries:
            return self.entries[path]
        cls = import_object(path, self.kind)
        self._check_class(cls, f"{self.kind}={path!r}")
        return self.register(path)(cls)

    # ---- plugins ----------------------------------------------------------------------------
    def load_plugins(self, force: bool = False) -> None:
        """Loads the entry points of ``rnnlab.{kind}s`` and imports the ``RNNLAB_PLUGINS``
        modules (once per process unless ``force``).

        An entry point that fails to load (an installed package that is broken or of another
        version) does not stop the others: it is named in a one-line warning on stderr, and
        choosing its name raises its error (:attr:`plugin_errors`).

        Raises:
          PluginError: an ``RNNLAB_PLUGINS`` module cannot be imported (again on every later
            call while ``RNNLAB_PLUGINS`` is unchanged)."""
        modules = os.environ.get(PLUGINS_ENV, "")
        if self._plugins_loaded and not force:
            if self._load_error is None:
                return
            if self._load_error[0] == modules:
                raise self._load_error[1]
            # RNNLAB_PLUGINS changed since its module failed: load again
        self._plugins_loaded = True
        self._load_error = None
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            dist = getattr(ep.dist, "name", "?")
            what = f"entry point {ep.name} = {ep.value!r} (group {self.entry_point_group}, " \
                   f"distribution {dist})"
            try:
                obj = ep.load()
                if isinstance(obj, type):
                    self._check_class(obj, what)
                    if self.entries.get(ep.name) is not obj:
                        self.register(ep.name)(obj)
                elif not isinstance(obj, type(os)):
                    raise PluginError(f"{what} must name a {self.kind} class or a module; got "
                                      f"{type(obj).__name__}")
            except Exception as err:
                message = (str(err) if isinstance(err, PluginError) else
                           f"{what} failed to load: {type(err).__name__}: {err}")
                if self.plugin_errors.get(ep.name) != message:
                    print(f"[rnnlab] warning: {message}; {self.kind} {ep.name!r} is not "
                          f"available", file=sys.stderr)
                self.plugin_errors[ep.name] = message
        for module in filter(None, (m.strip() for m in modules.split(","))):
            try:
                importlib.import_module(module)
            except ImportError as err:
                error = PluginError(f"{PLUGINS_ENV} names module {module!r}, which cannot be "
                                    f"imported: {err}")
                self._load_error = (modules, error)
                raise error from err

    # ---- looking up and building ------------------------------------------------------------
    def get(self, name: str) -> type:
        if name not in self.entries:
            self.load_plugins()
        if name not in self.entries and name in self.plugin_errors:
            raise PluginError(self.plugin_errors[name])
        if name not in self.entries and is_class_path(name):
            return self.register_path(name)
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                             f"{sorted(self.entries)} (or a class path such as "
                             f"mypkg.module.MyClass)")
        return self.entries[name]

    def make(self, name: str, **options):
        """Builds ``name`` with ``options``; unknown options raise ``TypeError`` naming them
        and the accepted ones."""
        cls = self.get(name)
        accepted = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise TypeError(f"{self.kind} {name!r} has no option(s) {unknown}; accepted: "
                            f"{sorted(accepted)}")
        return cls(**options)

    def schema(self, name: str) -> type:
        """A config dataclass for Hydra's ConfigStore: a ``name`` field plus the class's own
        fields, with real type hints and defaults."""
        cls = self.get(name)
        hints = typing.get_type_hints(cls)
        fields: list[Any] = [("name", str, dataclasses.field(default=name))]
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            default = (dataclasses.field(default_factory=f.default_factory)
                       if f.default is dataclasses.MISSING
                       else dataclasses.field(default=f.default))
            fields.append((f.name, hints[f.name], default))
        return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)


def chosen_names(overrides: list[str], key: str) -> list[str]:
    """The values a list of Hydra command-line ``overrides`` gives to the config group
    ``key`` (``cell=gru``, ``-m`` sweeps ``cell=lstm,mypkg.cells.MyCell``, ``choice(...)``),
    so that class paths among them can be registered before the config is composed.
    Overrides that do not parse are left for Hydra to report."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    names: list[str] = []
    parser = OverridesParser.create()
    for text in overrides:
        if not isinstance(text, str) or not text.lstrip("+~").startswith(f"{key}="):
            continue
        try:
            (override,) = parser.parse_overrides([text])
        except Exception:  # Hydra reports the bad override itself when it composes
            continue
        if override.is_sweep_override():
            try:  # glob(...) needs Hydra's config loader: Hydra expands it when it composes
                names.extend(str(v) for v in override.sweep_iterator())
            except Exception:
                continue
        elif override.value() is not None:
            names.append(str(override.value()))
    return names
