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

    def init(self, key: jax.Array, input_size: int) -> Params:
        return self._dense_params(key, input_size)

    def step(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array):
        z_BxH = xp_BxG + carry.h @ params["recurrent_kernel"].astype(xp_BxG.dtype)
        h_BxH = activation(self.activation)(z_BxH)
        return HiddenCarry(h_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        H = self.hidden_size
        return H * input_size + H * H + H
