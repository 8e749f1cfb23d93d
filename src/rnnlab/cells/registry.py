"""The cell registry: name -> cell class. Cells register themselves with ``@register_cell``;
cells of other packages arrive as plugins (entry point group ``rnnlab.cells``, the
``RNNLAB_PLUGINS`` modules, or a class path as the name; see :mod:`rnnlab.registry`)."""

from rnnlab.cells.base import Cell
from rnnlab.registry import Registry

CELL_REGISTRY = Registry("cell", base=Cell)
CELLS = CELL_REGISTRY.entries
register_cell = CELL_REGISTRY.register
get_cell_class = CELL_REGISTRY.get
make_cell = CELL_REGISTRY.make  # e.g. make_cell("gru", hidden_size=64)
cell_schema = CELL_REGISTRY.schema
load_cell_plugins = CELL_REGISTRY.load_plugins
