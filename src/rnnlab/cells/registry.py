"""The cell registry: name -> cell class. Cells register themselves with ``@register_cell``."""

import dataclasses
import typing

CELLS: dict[str, type] = {}


def register_cell(name: str):
    """Class decorator registering a :class:`~rnnlab.cells.base.Cell` subclass under ``name``."""

    def wrap(cls):
        if name in CELLS and CELLS[name] is not cls:
            raise ValueError(f"cell name {name!r} is already registered to {CELLS[name]}")
        CELLS[name] = cls
        cls.registered_name = name
        return cls

    return wrap


def get_cell_class(name: str) -> type:
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; registered cells: {sorted(CELLS)}")
    return CELLS[name]


def make_cell(name: str, **options):
    """Builds a registered cell, e.g. ``make_cell("gru", hidden_size=64)``. Unknown options
    raise ``TypeError`` naming the option and the accepted ones."""
    cls = get_cell_class(name)
    accepted = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"cell {name!r} has no option(s) {unknown}; accepted: {sorted(accepted)}")
    return cls(**options)


def cell_schema(name: str) -> type:
    """A config dataclass for the cell: a ``name`` field plus the cell's own fields, with real
    type hints, for Hydra's ConfigStore."""
    cls = get_cell_class(name)
    hints = typing.get_type_hints(cls)
    fields = [("name", str, dataclasses.field(default=name))]
    for f in dataclasses.fields(cls):
        fields.append((f.name, hints[f.name], dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)
