"""Independently recurrent neural network (Li, Li, Cook, Zhu & Gao 2018, "Independently
Recurrent Neural Network (IndRNN): Building a longer and deeper RNN", CVPR, eq. 2): each unit
recurs only on itself, through a vector of recurrent weights.

.. math::

   h_t = \\phi(W x_t + u \\odot h_{t-1} + b)

with :math:`\\phi` = ``activation`` (ReLU, as in the paper). The recurrent-weight constraint
(Section 3.1): for ReLU, :math:`\\partial h_T / \\partial h_t` contains :math:`u^{T-t}`, so
gradients stay bounded when :math:`|u_n| \\le \\gamma^{1/T}`; the paper uses
:math:`\\gamma = 2`, i.e. ``recurrent_max = 2 ** (1 / T)``. With ``recurrent_max`` set, the step
uses :math:`\\mathrm{clip}(u, -u_{max}, u_{max})`, so the constraint holds at every update
whatever the optimizer does (a coordinate outside the bound gets no gradient until the
optimizer moves it back, as with the paper's clipping after each update); ``None`` leaves
``u`` free.

Parameter layout: ``kernel [D, H]`` (``kernel_init``), ``recurrent_weight [H]`` drawn
uniformly from ``[0, min(1, recurrent_max)]`` (the paper's initialisation for the adding
problem, Section 4.1), ``bias [H]``. Count: ``H·D + 2H``. ``recurrent_init`` is unused (the
recurrent weights are a vector); ``init_preset`` applies to the kernel and the bias, while
``u`` keeps the paper's draw under every preset (no framework has an IndRNN layer).

Example::

    >>> from rnnlab.cells import IndRNN
    >>> IndRNN(hidden_size=10).param_count(3)
    50
"""

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab.cells.base import (
    Cell,
    HiddenCarry,
    Params,
    activation,
    dtype_of,
)
from rnnlab.cells.registry import register_cell


@register_cell("indrnn")
@dataclasses.dataclass(frozen=True)
class IndRNN(Cell):
    """IndRNN cell; see the module docstring.

    Attributes:
      activation: ``relu`` (the paper's) or any of :data:`rnnlab.cells.base.ACTIVATIONS`.
      recurrent_max: bound on ``|u|`` (``2 ** (1 / T)`` in the paper); ``None``: no bound.
    """

    activation: str = "relu"
    recurrent_max: float | None = None

    gates = ("h",)
    carry_type = HiddenCarry

    def __post_init__(self):
        super().__post_init__()
        if self.recurrent_max is not None and not (
                isinstance(self.recurrent_max, int | float) and self.recurrent_max > 0):
            raise ValueError(f"cell.recurrent_max must be a positive number or null; got "
                             f"{self.recurrent_max!r}")

    def init(self, key: jax.Array, input_size: int) -> Params:
        if not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"input_size must be a positive int; got {input_size!r}")
        k_in, k_rec, k_b = jax.random.split(key, 3)
        H, pdt = self.hidden_size, dtype_of(self.param_dtype)
        top = 1.0 if self.recurrent_max is None else min(1.0, float(self.recurrent_max))
        return {
            "kernel": self.kernel_initializer()(k_in, (input_size, H), pdt),
            "recurrent_weight": jax.random.uniform(k_rec, (H,), pdt, 0.0, top),
            "bias": self.bias_initializer()(k_b, (H,), pdt),
        }

    def recurrent_weight(self, params: Params, dtype) -> jax.Array:
        """``u``, clipped to ``[-recurrent_max, recurrent_max]`` when that is set, ``[H]``."""
        u = params["recurrent_weight"].astype(dtype)
        if self.recurrent_max is None:
            return u
        return jnp.clip(u, -self.recurrent_max, self.recurrent_max)

    def step(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array):
        u = self.recurrent_weight(params, xp_BxG.dtype)
        h_BxH = activation(self.activation)(xp_BxG + u[None, :] * carry.h)
        return HiddenCarry(h_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        H = self.hidden_size
        return H * input_size + 2 * H
