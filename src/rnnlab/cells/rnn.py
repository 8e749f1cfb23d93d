"""Vanilla (Elman) recurrent cell: :math:`h_t = \\phi(W x_t + U h_{t-1} + b)`.

``activation`` is ``tanh`` (default) or ``relu`` (Le et al. 2015 pair it with
``recurrent_init="identity"``). Layout: ``kernel [D, H]``, ``recurrent_kernel [H, H]``,
``bias [H]`` (PyTorch's two biases sum into this one). Count: ``H·D + H² + H``.

Example::

    >>> from rnnlab.cells import SimpleRNN
    >>> SimpleRNN(hidden_size=4).param_count(2)
    28
"""

import dataclasses

import jax

from rnnlab.cells.base import Cell, HiddenCarry, Params, activation
from rnnlab.cells.registry import register_cell


@register_cell("rnn")
@dataclasses.dataclass(frozen=True)
class SimpleRNN(Cell):
    """Vanilla RNN cell; see the module docstring.

    Attributes:
      activation: ``tanh`` or ``relu``.
    """

    activation: str = "tanh"

    gates = ("h",)
    carry_type = HiddenCarry
    torch_two_biases = True
    update_reads_sum = True  # h = phi(xp + hr)

    def init(self, key: jax.Array, input_size: int) -> Params:
        return self._dense_params(key, input_size)

    def update(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array,
               hr_BxG: jax.Array, probe=None):
        """:math:`h_t = \\phi(x_t W + b + h_{t-1} U)` from ``hr_BxG = h_{t-1} U`` (see
        :meth:`Cell.update`); the ``probe`` is added to ``h_t``."""
        h_BxH = activation(self.activation)(xp_BxG + hr_BxG)
        if probe is not None:
            h_BxH = h_BxH + probe.h
        return HiddenCarry(h_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        H = self.hidden_size
        return H * input_size + H * H + H
