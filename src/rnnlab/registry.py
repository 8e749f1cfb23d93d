"""Name -> class registries (cells, tasks): one implementation of registering, looking up,
building with named options, and deriving a Hydra config schema from a dataclass."""

import dataclasses
import typing
from typing import Any


class Registry:
    """Registered dataclasses of one kind (``"cell"``, ``"task"``).

    ``entries`` is the plain ``{name: class}`` dict; ``register(name)`` is a class decorator
    that also sets ``cls.registered_name``."""

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, type] = {}

    def register(self, name: str):
        def wrap(cls):
            if name in self.entries and self.entries[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered to "
                                 f"{self.entries[name]}")
            self.entries[name] = cls
            cls.registered_name = name
            return cls

        return wrap

    def get(self, name: str) -> type:
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                             f"{sorted(self.entries)}")
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
            default = (dataclasses.field(default_factory=f.default_factory)
                       if f.default is dataclasses.MISSING
                       else dataclasses.field(default=f.default))
            fields.append((f.name, hints[f.name], default))
        return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)
