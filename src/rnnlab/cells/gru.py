"""Gated recurrent unit (Cho et al. 2014).

Default (``reset_after=True``; PyTorch, cuDNN and Keras ≥ 2 default): the reset gate is applied
after the recurrent product, so the recurrent part has its own bias.

.. math::

   r_t &= \\sigma(W_r x_t + b_{ir} + U_r h_{t-1} + b_{hr}) \\\\
   z_t &= \\sigma(W_z x_t + b_{iz} + U_z h_{t-1} + b_{hz}) \\\\
   n_t &= \\tanh(W_n x_t + b_{in} + r_t \\odot (U_n h_{t-1} + b_{hn})) \\\\
   h_t &= (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}

Classic form (``reset_after=False``, Cho et al. 2014):
:math:`n_t = \\tanh(W_n x_t + b_n + U_n (r_t \\odot h_{t-1}))`, one bias.

Parameter layout (gate order ``r, z, n`` as in PyTorch): ``kernel [D, 3H]``,
``recurrent_kernel [H, 3H]``, ``bias [3H]`` (input bias) and, with ``reset_after``,
``recurrent_bias [3H]``. Count: ``3H(D + H + 2)`` (reset after) or ``3H(D + H + 1)``.

Example::

    >>> from rnnlab.cells import GRU
    >>> GRU(hidden_size=50).param_count(1) == 3 * 50 * (1 + 50 + 2)
    True
"""

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell, HiddenCarry, Params, activation
from rnnlab.cells.registry import register_cell


@register_cell("gru")
@dataclasses.dataclass(frozen=True)
class GRU(Cell):
    """GRU cell; see the module docstring.

    Attributes:
      reset_after: apply the reset gate after the recurrent product (default) or before.
      activation: candidate nonlinearity (``tanh``).
      recurrent_activation: gate nonlinearity (``sigmoid``).
    """

    reset_after: bool = True
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    gates = ("r", "z", "n")
    carry_type = HiddenCarry

    def init(self, key: jax.Array, input_size: int) -> Params:
        k_dense, k_rb = jax.random.split(key)
        params = self._dense_params(k_dense, input_size)
        if self.reset_after:
            params["recurrent_bias"] = self.bias_initializer()(
                k_rb, (3 * self.hidden_size,), params["bias"].dtype)
        return params

    @property
    def fusable(self) -> bool:
        """Only the reset-after form splits into ``h @ U`` and a pointwise update."""
        return self.reset_after

    def update(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array,
               hr_BxG: jax.Array, probe=None):
        """The reset-after step from ``hr_BxG = h_{t-1} U`` (see :meth:`Cell.update`); the
        ``probe`` is added to ``h_t``."""
        if not self.reset_after:
            raise NotImplementedError("the reset-before GRU (reset_after=False) does not split "
                                      "into h @ U and a pointwise update")
        sig = activation(self.recurrent_activation)
        x_r, x_z, x_n = jnp.split(xp_BxG, 3, axis=-1)
        hp_BxG = hr_BxG + params["recurrent_bias"].astype(xp_BxG.dtype)[None, :]
        h_r, h_z, h_n = jnp.split(hp_BxG, 3, axis=-1)
        r, z = sig(x_r + h_r), sig(x_z + h_z)
        n = activation(self.activation)(x_n + r * h_n)
        h_BxH = (1.0 - z) * n + z * carry.h
        if probe is not None:
            h_BxH = h_BxH + probe.h
        return HiddenCarry(h_BxH), h_BxH

    def step(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array):
        if self.reset_after:
            return super().step(params, carry, xp_BxG)
        act = activation(self.activation)
        sig = activation(self.recurrent_activation)
        h = carry.h
        U_HxG = params["recurrent_kernel"]
        H = self.hidden_size
        x_r, x_z, x_n = jnp.split(xp_BxG, 3, axis=-1)
        h_r, h_z = jnp.split(self.matmul(h, U_HxG[:, :2 * H]), 2, axis=-1)
        r, z = sig(x_r + h_r), sig(x_z + h_z)
        n = act(x_n + self.matmul(r * h, U_HxG[:, 2 * H:]))
        h_BxH = (1.0 - z) * n + z * h
        return HiddenCarry(h_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        H = self.hidden_size
        return 3 * H * (input_size + H + (2 if self.reset_after else 1))
