"""rnnlab's recurrent stack as an ``equinox.Module`` (see :mod:`rnnlab.adapters`); needs the
``equinox`` extra: ``pip install "rnnlab[equinox]"``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab.cells import LSTM
    >>> from rnnlab.adapters.equinox import RecurrentStack
    >>> stack = RecurrentStack([LSTM(8), LSTM(4)], input_size=3, key=jax.random.key(0))
    >>> y_BxTxH, carries = stack(jnp.ones((2, 5, 3)))
    >>> y_BxTxH.shape
    (2, 5, 4)
"""

from collections.abc import Sequence
from typing import Any

try:
    import equinox as eqx
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("rnnlab.adapters.equinox needs equinox: pip install "
                      "'rnnlab[equinox]' (or pip install equinox)") from err
import jax

from rnnlab import adapters
from rnnlab.cells.base import Cell
from rnnlab.recurrent import RecurrentStack as LinenStack


class RecurrentStack(eqx.Module):
    """Stacked (optionally bidirectional) rnnlab recurrent layers as an Equinox module.

    Args:
      cells: one :class:`~rnnlab.cells.base.Cell` per layer.
      input_size: D, the input features.
      key: the init key (the params equal the linen stack's ``init`` with this key).
      **options: the linen :class:`~rnnlab.recurrent.RecurrentStack`'s options.

    Attributes:
      params: the linen params tree ``{"layer_0": {"cell": ...}}`` (trainable leaves).
      stack: the linen module (static).
    """

    params: Any
    stack: LinenStack = eqx.field(static=True)

    def __init__(self, cells: Sequence[Cell], input_size: int, *, key: jax.Array, **options):
        self.stack = adapters.make_stack(cells, **options)
        self.params = adapters.init_params(self.stack, key, input_size)

    def __call__(self, x_BxTxD: jax.Array, seq_lengths_B=None, *, probes=None,
                 dropout_key=None):
        """``(y_BxTxH', final_carries)``, as the linen stack's ``apply``."""
        return adapters.apply_stack(self.stack, self.params, x_BxTxD, seq_lengths_B,
                                    probes=probes, dropout_key=dropout_key)

    def probe_zeros(self, x_BxTxD: jax.Array, seq_lengths_B=None):
        """Zero gradient probes for these input shapes (pass them as ``probes``)."""
        return adapters.probe_zeros(self.stack, self.params, x_BxTxD, seq_lengths_B)
