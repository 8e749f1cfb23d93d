"""The cell registry: name -> cell class. Cells register themselves with ``@register_cell``."""

from rnnlab.registry import Registry

CELL_REGISTRY = Registry("cell")
CELLS = CELL_REGISTRY.entries
register_cell = CELL_REGISTRY.register
get_cell_class = CELL_REGISTRY.get
make_cell = CELL_REGISTRY.make  # e.g. make_cell("gru", hidden_size=64)
cell_schema = CELL_REGISTRY.schema
