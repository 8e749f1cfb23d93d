"""The cell contract shared by every recurrent cell.

Shape legend: B batch, T time, D input features, H hidden units, G gate pre-activations
(``num_gates * H``).

A cell is a frozen dataclass of hyperparameters with pure methods over a params pytree:

* ``init(key, input_size) -> params``
* ``project(params, x_BxTxD) -> xp_BxTxG``: the input-to-gates product for all steps at once,
  computed outside the scan (one large matmul, parallel over time).
* ``step(params, carry, xp_BxG) -> (carry, h_BxH)``: one time step, the only part run inside
  ``jax.lax.scan`` by :mod:`rnnlab.recurrent`.
* ``initial_carry(params, batch_size) -> carry``: zeros; a learned initial carry is owned by
  the driver.
* ``param_count(input_size) -> int``: the closed-form count, checked against ``init``.

Cells know nothing of time, sequence lengths, direction or unrolling.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]


class LSTMCarry(NamedTuple):
    """Carry of the LSTM family: hidden state ``h_BxH`` and cell state ``c_BxH``."""

    h: jax.Array
    c: jax.Array


class HiddenCarry(NamedTuple):
    """Carry of cells whose only state is the hidden state ``h_BxH`` (GRU, vanilla RNN)."""

    h: jax.Array


INITIALIZERS: dict[str, Callable[..., Any]] = {
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "glorot_normal": jax.nn.initializers.glorot_normal(),
    "lecun_normal": jax.nn.initializers.lecun_normal(),
    "he_normal": jax.nn.initializers.he_normal(),
    "orthogonal": jax.nn.initializers.orthogonal(),
    "identity": lambda key, shape, dtype: jnp.eye(shape[0], shape[1], dtype=dtype),
    "zeros": jax.nn.initializers.zeros,
    "ones": jax.nn.initializers.ones,
}

# Initializers that need a matrix (fan-in/fan-out, orthogonality, an identity): they cannot
# initialise a bias or any other vector, so vector fields refuse them when the cell is built.
MATRIX_ONLY = frozenset({"glorot_uniform", "glorot_normal", "lecun_normal", "he_normal",
                         "orthogonal", "identity"})
VECTOR_INITIALIZERS = tuple(sorted(set(INITIALIZERS) - MATRIX_ONLY))

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "linear": lambda x: x,
}

DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16,
          "float16": jnp.float16}


def _lookup(table: dict, kind: str, name: str, field: str):
    if name not in table:
        raise ValueError(f"{field}={name!r} is not a known {kind}; accepted: {sorted(table)}")
    return table[name]


def initializer(name: str, field: str = "initializer"):
    return _lookup(INITIALIZERS, "initializer", name, field)


def vector_initializer(name: str, field: str):
    """An initializer for a vector (a bias): refuses the matrix-only ones by ``field``."""
    init = initializer(name, field)
    if name in MATRIX_ONLY:
        raise ValueError(f"{field}={name!r} needs a matrix and cannot initialise a vector; "
                         f"accepted for {field}: {list(VECTOR_INITIALIZERS)}")
    return init


def activation(name: str, field: str = "activation"):
    return _lookup(ACTIVATIONS, "activation", name, field)


def dtype_of(name: str, field: str = "dtype"):
    return _lookup(DTYPES, "dtype", name, field)


def check_dtype_available(name: str, field: str) -> None:
    """Refuses an unknown dtype, and ``float64`` while JAX's x64 mode is off (JAX would
    silently compute in float32 while the config says float64). Turn x64 on with
    ``JAX_ENABLE_X64=1`` or ``jax.config.update("jax_enable_x64", True)`` first."""
    dtype_of(name, field)
    if name == "float64" and not jax.config.read("jax_enable_x64"):
        raise ValueError(f"{field}=float64 needs JAX's 64-bit mode, which is off (JAX would "
                         "compute in float32); set JAX_ENABLE_X64=1 in the environment, or "
                         "choose one of float32, bfloat16, float16")


# Initialisation presets (``cell.init_preset``): each reproduces one framework's defaults for its
# own layers. Roles: kernel [D, G], recurrent [H, G], bias [G] (and a GRU's recurrent bias),
# peephole [k, H]; the LSTM family's forget-gate bias is part of the preset too.
#   rnnlab  kernel_init (Glorot-uniform, fused), recurrent_init per [H, H] gate block
#           (orthogonal), bias_init (zeros), forget bias cell.forget_bias
#   pytorch every weight and bias U(-1/sqrt(H), 1/sqrt(H)) (torch.nn.LSTM/GRU/RNN's
#           reset_parameters); the LSTM's and RNN's single bias here is PyTorch's
#           bias_ih + bias_hh, so it is the sum of two such draws; no forget bias
#   keras   Glorot-uniform over the fused [D, G] kernel, orthogonal over the fused [H, G]
#           recurrent kernel (rows orthonormal), zero biases, forget bias 1
#           (unit_forget_bias=True); peepholes Glorot-uniform per [H] vector as TF's
#           PeepholeLSTMCell (limit sqrt(3/H))
#   flax    LeCun-normal kernels (truncated normal, std 1/sqrt(D)), orthogonal [H, H]
#           recurrent blocks (one nn.Dense per gate), zero biases, no forget bias
#           (flax.linen.LSTMCell/GRUCell/SimpleCell)
INIT_PRESETS = ("rnnlab", "pytorch", "keras", "flax")
# fields a preset other than rnnlab sets itself (they must stay at their defaults)
PRESET_FIELDS = ("kernel_init", "recurrent_init", "bias_init", "forget_bias", "peephole_init")


def torch_uniform(hidden_size: int, draws: int = 1):
    """PyTorch's RNN initializer, U(-1/sqrt(H), 1/sqrt(H)); ``draws=2`` sums two draws (the
    sum of PyTorch's ``bias_ih`` and ``bias_hh``)."""
    bound = 1.0 / float(hidden_size) ** 0.5

    def init(key, shape, dtype):
        keys = jax.random.split(key, draws)
        return sum(jax.random.uniform(k, shape, dtype, -bound, bound) for k in keys)

    return init


def dense_initializers(preset: str, fan_in: int):
    """``(kernel_init, bias_init)`` of a dense layer with ``fan_in`` inputs (the model's head,
    ``kernel [in, out]``) under an init preset, as that framework's own dense layer draws them:

    * ``pytorch``: ``torch.nn.Linear.reset_parameters``: kernel ``kaiming_uniform(a=sqrt(5))``,
      which is U(-1/sqrt(in), 1/sqrt(in)), and bias U(-1/sqrt(in), 1/sqrt(in));
    * ``keras``: ``keras.layers.Dense``: Glorot-uniform kernel, zero bias;
    * ``flax`` and ``rnnlab``: ``flax.linen.Dense``: LeCun-normal kernel, zero bias.

    Raises:
      ValueError: an unknown preset or a non-positive ``fan_in``."""
    if preset not in INIT_PRESETS:
        raise ValueError(f"init_preset={preset!r} is not a preset; accepted: "
                         f"{list(INIT_PRESETS)}")
    if not isinstance(fan_in, int) or fan_in <= 0:
        raise ValueError(f"fan_in must be a positive int; got {fan_in!r}")
    if preset == "pytorch":
        bound = 1.0 / float(fan_in) ** 0.5

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return uniform, uniform
    if preset == "keras":
        return INITIALIZERS["glorot_uniform"], INITIALIZERS["zeros"]
    return INITIALIZERS["lecun_normal"], INITIALIZERS["zeros"]


def init_blocks(init_name: str, key: jax.Array, rows: int, hidden: int, blocks: int, dtype,
                field: str) -> jax.Array:
    """A ``[rows, blocks*hidden]`` matrix initialised one ``[rows, hidden]`` gate block at a
    time, so each gate's recurrent block is itself orthogonal (as in Flax and PyTorch-style
    per-gate init; Keras initialises the fused matrix at once)."""
    init = initializer(init_name, field)
    keys = jax.random.split(key, blocks)
    return jnp.concatenate([init(k, (rows, hidden), dtype) for k in keys], axis=-1)


@dataclasses.dataclass(frozen=True)
class Cell:
    """Base class of all cells. Subclasses set ``gates`` and ``carry_type`` and implement
    ``init``, ``project``, ``step`` and ``param_count``.

    Attributes:
      hidden_size: number of hidden units H (> 0).
      kernel_init: initializer of the input kernel ``[D, G]``.
      recurrent_init: initializer of each ``[H, H]`` block of the recurrent kernel.
      bias_init: initializer of the biases.
      dtype: computation dtype (carries, gates, and the results of every matmul).
      param_dtype: parameter dtype.
      matmul_dtype: the operands' dtype in the input and recurrent matmuls, which still
        accumulate and return ``dtype`` (``preferred_element_type``): ``bfloat16`` with
        ``dtype=float32`` is mixed precision as on TPUs and tensor-core GPUs (bf16 products,
        float32 sums, carries and gates); ``None``: ``dtype``.
      init_preset: ``rnnlab`` (the fields above), or ``pytorch``, ``keras``, ``flax``: that
        framework's default initialisation (see :data:`INIT_PRESETS`); a preset other than
        ``rnnlab`` sets the initializer fields and the forget bias itself, which must then be
        left at their defaults.
    """

    hidden_size: int = 128
    kernel_init: str = "glorot_uniform"
    recurrent_init: str = "orthogonal"
    bias_init: str = "zeros"
    dtype: str = "float32"
    param_dtype: str = "float32"
    matmul_dtype: str | None = None
    init_preset: str = "rnnlab"

    gates: ClassVar[tuple[str, ...]] = ()
    carry_type: ClassVar[type] = HiddenCarry
    # PyTorch splits this cell's bias in two summed vectors (LSTM, RNN): the pytorch preset
    # then draws the bias as the sum of two uniforms
    torch_two_biases: ClassVar[bool] = False

    def __post_init__(self):
        if (not isinstance(self.hidden_size, int) or isinstance(self.hidden_size, bool)
                or self.hidden_size <= 0):
            raise ValueError(f"cell.hidden_size must be a positive int; got "
                             f"{self.hidden_size!r}")
        initializer(self.kernel_init, "cell.kernel_init")
        initializer(self.recurrent_init, "cell.recurrent_init")
        vector_initializer(self.bias_init, "cell.bias_init")
        for field in ("dtype", "param_dtype"):
            check_dtype_available(getattr(self, field), f"cell.{field}")
        if self.matmul_dtype is not None:
            check_dtype_available(self.matmul_dtype, "cell.matmul_dtype")
        for field in ("activation", "recurrent_activation"):  # in the cells that have them
            if hasattr(self, field):
                activation(getattr(self, field), f"cell.{field}")
        if self.init_preset not in INIT_PRESETS:
            raise ValueError(f"cell.init_preset={self.init_preset!r} is not a preset; accepted: "
                             f"{list(INIT_PRESETS)}")
        if self.init_preset != "rnnlab":
            for f in dataclasses.fields(self):
                if f.name in PRESET_FIELDS and getattr(self, f.name) != f.default:
                    raise ValueError(
                        f"cell.{f.name}={getattr(self, f.name)!r} conflicts with "
                        f"cell.init_preset={self.init_preset!r}, which sets it; leave "
                        f"cell.{f.name} at {f.default!r} or use init_preset='rnnlab'")

    # ---- contract -------------------------------------------------------------------------
    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def gate_size(self) -> int:
        """G, the width of ``project``'s output."""
        return self.num_gates * self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> Params:
        raise NotImplementedError

    def project(self, params: Params, x_BxTxD: jax.Array) -> jax.Array:
        """Input-to-gates product for all steps: ``x W + b``, ``[B, T, G]``."""
        self.check_input(params, x_BxTxD)
        dt = dtype_of(self.dtype)
        return self.matmul(x_BxTxD, params["kernel"]) + params["bias"].astype(dt)[None, None, :]

    def project_step(self, params: Params, x_BxD: jax.Array) -> jax.Array:
        """The projection of one step, ``x W + b``, ``[B, G]``: what ``project`` computes for
        each step, used when the driver projects inside the scan. A cell that overrides
        ``project`` overrides this too."""
        dt = dtype_of(self.dtype)
        return self.matmul(x_BxD, params["kernel"]) + params["bias"].astype(dt)[None, :]

    def matmul(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """``a @ b`` in the compute dtype, with operands in ``matmul_dtype`` when it is set
        (accumulated and returned in ``dtype``)."""
        dt = dtype_of(self.dtype)
        if self.matmul_dtype is None:
            return jnp.matmul(a.astype(dt), b.astype(dt))
        md = dtype_of(self.matmul_dtype)
        return jnp.matmul(a.astype(md), b.astype(md), preferred_element_type=dt)

    def step(self, params: Params, carry, xp_BxG: jax.Array):
        """One time step ``(params, carry, xp_BxG) -> (carry, h_BxH)``. A cell that defines
        :meth:`update` gets it as ``update(params, carry, xp_BxG, carry.h @ U)``; others
        override it."""
        if not self.fusable:
            raise NotImplementedError(f"{type(self).__name__} defines neither step nor update")
        return self.update(params, carry, xp_BxG, self.recurrent_product(params, carry, xp_BxG))

    # ---- the split step (optional): driver-owned product, cell-owned pointwise update ---------
    def update(self, params: Params, carry, xp_BxG: jax.Array, hr_BxG: jax.Array, probe=None):
        """The pointwise part of a step whose only use of the recurrent kernel is the product
        ``hr_BxG = carry.h @ params["recurrent_kernel"]`` (``[B, H] x [H, G]``): returns
        ``(carry, h_BxH)`` from the previous carry, the input projection ``xp_BxG`` and
        ``hr_BxG``, adding ``probe`` (a carry of ``[B, H]`` arrays, or None) as
        :meth:`probed_step` does. It may read any parameter except ``kernel``, ``bias`` and
        ``recurrent_kernel`` (the driver owns those products).

        A cell that defines it gets fused backpropagation through time
        (:func:`rnnlab.recurrent.fused_scan_driver`): the backward loop runs only
        ``dhr_t Uᵀ`` and this function's VJP, and the weight gradients are computed after the
        loop as one product over all steps, the layout of cuDNN and PyTorch."""
        raise NotImplementedError

    # True when ``update`` reads ``xp_BxG`` and ``hr_BxG`` only through their sum (the LSTM's
    # and the RNN's pre-activations): their gradients are then equal, and the fused driver
    # keeps one of them per step instead of two
    update_reads_sum: ClassVar[bool] = False

    @property
    def fusable(self) -> bool:
        """Whether the step splits into the recurrent product and :meth:`update` (the cell
        defines ``update``); cells override it when only some of their options split."""
        return type(self).update is not Cell.update

    def recurrent_product(self, params: Params, carry, xp_BxG: jax.Array) -> jax.Array:
        """``hr_BxG = carry.h @ recurrent_kernel`` (:meth:`matmul`), in ``xp_BxG``'s dtype."""
        return self.matmul(carry.h, params["recurrent_kernel"]).astype(xp_BxG.dtype)

    def probed_step(self, params: Params, carry, xp_BxG: jax.Array, probe):
        """``step`` with the gradient probe ``probe`` (a carry of ``[B, H]`` zeros) added to
        each carry field where the step produces it, before anything in the same step reads
        it, so ``dL/d probe`` is the total derivative ``dL/d carry_t`` (see
        :mod:`rnnlab.gradients`). A cell with :meth:`update` adds it there; otherwise the
        default adds it after the step, which is exact when no carry field is read by another
        within the step (the GRU's and the RNN's ``h``); a cell whose output reads a state it
        has just written (the LSTM's ``h_t = o_t tanh(c_t)``) must add the probe to that state
        first."""
        if self.fusable:
            return self.update(params, carry, xp_BxG,
                               self.recurrent_product(params, carry, xp_BxG), probe)
        carry, h_BxH = self.step(params, carry, xp_BxG)
        carry = jax.tree.map(jnp.add, carry, probe)
        return carry, h_BxH + probe.h

    def initial_carry(self, params: Params | None, batch_size: int):
        """Zeros of the carry type, ``[B, H]`` per field."""
        zeros = jnp.zeros((batch_size, self.hidden_size), dtype_of(self.dtype))
        return self.carry_type(*([zeros] * len(self.carry_type._fields)))

    def param_count(self, input_size: int) -> int:
        raise NotImplementedError

    # ---- shared helpers -------------------------------------------------------------------
    def check_input(self, params: Params, x_BxTxD: jax.Array) -> None:
        """Refuses an input that the parameters were not made for.

        Raises:
          ValueError: ``x_BxTxD`` is not 3-D, or its feature width D differs from the rows of
            the input kernel ``params["kernel"]`` ``[D, G]`` (cells without one: width
            unchecked)."""
        if x_BxTxD.ndim != 3:
            raise ValueError(f"x must be [B, T, D]; got shape {x_BxTxD.shape}")
        kernel = params.get("kernel") if hasattr(params, "get") else None
        if kernel is None:  # a cell without an input kernel: nothing to compare
            return
        d = kernel.shape[0]
        if x_BxTxD.shape[-1] != d:
            raise ValueError(
                f"x has {x_BxTxD.shape[-1]} features (shape {x_BxTxD.shape}) but the cell "
                f"was initialised for input_size={d}")

    def _cast(self, params: Params) -> Params:
        dt = dtype_of(self.dtype)
        return {k: v.astype(dt) for k, v in params.items()}

    # ---- initialisation (the preset decides) ------------------------------------------------
    def kernel_initializer(self):
        """Initializer of the input kernel ``[D, G]`` under ``init_preset``."""
        return {"rnnlab": lambda: initializer(self.kernel_init, "cell.kernel_init"),
                "pytorch": lambda: torch_uniform(self.hidden_size),
                "keras": lambda: INITIALIZERS["glorot_uniform"],
                "flax": lambda: INITIALIZERS["lecun_normal"]}[self.init_preset]()

    def recurrent_kernel(self, key: jax.Array, rows: int, blocks: int, dtype) -> jax.Array:
        """A ``[rows, blocks*H]`` recurrent matrix under ``init_preset`` (per ``[rows, H]``
        block for rnnlab and flax, fused for keras, elementwise for pytorch)."""
        H = self.hidden_size
        if self.init_preset == "pytorch":
            return torch_uniform(H)(key, (rows, blocks * H), dtype)
        if self.init_preset == "keras":
            return INITIALIZERS["orthogonal"](key, (rows, blocks * H), dtype)
        name = self.recurrent_init if self.init_preset == "rnnlab" else "orthogonal"
        return init_blocks(name, key, rows, H, blocks, dtype, "cell.recurrent_init")

    def bias_initializer(self, summed: bool = False):
        """Initializer of a bias under ``init_preset``; ``summed``: the bias stands for
        PyTorch's ``bias_ih + bias_hh`` (two draws under the pytorch preset)."""
        if self.init_preset == "pytorch":
            return torch_uniform(self.hidden_size, 2 if summed else 1)
        if self.init_preset == "rnnlab":
            return vector_initializer(self.bias_init, "cell.bias_init")
        return INITIALIZERS["zeros"]

    def _dense_params(self, key: jax.Array, input_size: int) -> Params:
        """``kernel [D, G]``, ``recurrent_kernel [H, G]`` and ``bias [G]``, gate blocks in
        ``self.gates`` order. The input kernel is initialised as one fused matrix (Keras'
        convention); the recurrent kernel one ``[H, H]`` block per gate, so that each gate's
        block is orthogonal."""
        if not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"input_size must be a positive int; got {input_size!r}")
        k_in, k_rec, k_b = jax.random.split(key, 3)
        pdt = dtype_of(self.param_dtype)
        H, n = self.hidden_size, self.num_gates
        return {
            "kernel": self.kernel_initializer()(k_in, (input_size, n * H), pdt),
            "recurrent_kernel": self.recurrent_kernel(k_rec, H, n, pdt),
            "bias": self.bias_initializer(summed=self.torch_two_biases)(k_b, (n * H,), pdt),
        }
