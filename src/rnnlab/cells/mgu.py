"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016, "Minimal gated unit for recurrent neural
networks", Int. J. Automation and Computing 13(3), eq. 5-7): a GRU with a single gate, the
forget gate :math:`f`, serving as both reset and update gate.

.. math::

   f_t &= \\sigma(W_f x_t + U_f h_{t-1} + b_f) \\\\
   \\tilde h_t &= \\phi(W_h x_t + U_h (f_t \\odot h_{t-1}) + b_h) \\\\
   h_t &= (1 - f_t) \\odot h_{t-1} + f_t \\odot \\tilde h_t

with :math:`\\phi` = ``activation`` (tanh) and :math:`\\sigma` = ``recurrent_activation``.

Parameter layout (gate order ``f, h``): ``kernel [D, 2H]``, ``recurrent_kernel [H, 2H]``,
``bias [2H]``; the ``f`` slice of the bias starts at ``forget_bias``. Count:
``2(H·D + H² + H)``.

Example::

    >>> from rnnlab.cells import MGU
    >>> MGU(hidden_size=10).param_count(1) == 2 * (10 + 100 + 10)
    True
"""

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell, HiddenCarry, Params, activation
from rnnlab.cells.registry import register_cell


@register_cell("mgu")
@dataclasses.dataclass(frozen=True)
class MGU(Cell):
    """Minimal gated unit; see the module docstring.

    Attributes:
      forget_bias: initial bias of the gate ``f`` (0.0: Zhou et al. give no special value).
      activation: candidate nonlinearity (``tanh``).
      recurrent_activation: gate nonlinearity (``sigmoid``).
    """

    forget_bias: float = 0.0
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    gates = ("f", "h")
    carry_type = HiddenCarry

    def init(self, key: jax.Array, input_size: int) -> Params:
        params = self._dense_params(key, input_size)
        H = self.hidden_size
        if self.init_preset == "rnnlab":  # no framework has an MGU forget bias
            params["bias"] = params["bias"].at[:H].add(self.forget_bias)
        return params

    def step(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array):
        H = self.hidden_size
        U_HxG = params["recurrent_kernel"]
        x_f, x_h = jnp.split(xp_BxG, 2, axis=-1)
        f = activation(self.recurrent_activation)(x_f + self.matmul(carry.h, U_HxG[:, :H]))
        candidate = activation(self.activation)(x_h + self.matmul(f * carry.h, U_HxG[:, H:]))
        h_BxH = (1.0 - f) * carry.h + f * candidate
        return HiddenCarry(h_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        H = self.hidden_size
        return 2 * (H * input_size + H * H + H)
