"""Weights to and from PyTorch's and Keras' layouts.

Shape legend: D input features, H hidden units, G gate pre-activations (``num_gates * H``),
L layers, B batch.

Our layout (see each cell's module): ``kernel [D, G]``, ``recurrent_kernel [H, G]``,
``bias [G]``; the GRU with ``reset_after`` adds ``recurrent_bias [G]``; the peephole LSTM adds
``peephole [3, H]``. Gate order: LSTM ``i, f, g, o``; GRU ``r, z, n``; RNN one block.

PyTorch (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``), per layer ``k`` and direction (suffix
``_reverse`` for the backward direction of a bidirectional module):

=====================  ==========  =====================================================
key                    shape       ours
=====================  ==========  =====================================================
``weight_ih_l{k}``     ``[G, D]``  ``kernel.T``
``weight_hh_l{k}``     ``[G, H]``  ``recurrent_kernel.T``
``bias_ih_l{k}``       ``[G]``     LSTM/RNN: ``bias_ih + bias_hh = bias``; GRU: ``bias``
``bias_hh_l{k}``       ``[G]``     LSTM/RNN: (exported as zeros); GRU: ``recurrent_bias``
=====================  ==========  =====================================================

PyTorch's gate orders are ours (LSTM ``i, f, g, o``; GRU ``r, z, n``), and its GRU applies the
reset gate after the recurrent product, so only ``GRU(reset_after=True)`` converts. Layer
``k > 0`` of a bidirectional module reads ``[forward, backward]`` concatenated, as
:class:`~rnnlab.recurrent.RecurrentStack` with ``merge="concat"``. Modules built with
``bias=False`` have no bias keys; they import with zero biases. ``proj_size`` (``weight_hr``)
has no counterpart here.

Keras (``layer.get_weights()`` order):

* ``LSTM``: ``[kernel [D, 4H], recurrent_kernel [H, 4H], bias [4H]]``, gate order
  ``i, f, c, o``: exactly ours.
* ``GRU(reset_after=True)``: ``[kernel [D, 3H], recurrent_kernel [H, 3H], bias [2, 3H]]``,
  gate order ``z, r, h``; bias row 0 is the input bias, row 1 the recurrent bias.
  ``GRU(reset_after=False)``: ``bias [3H]``, matching ``GRU(reset_after=False)`` here.
* ``SimpleRNN``: ``[kernel [D, H], recurrent_kernel [H, H], bias [H]]``: exactly ours.
* ``tf.keras.experimental.PeepholeLSTMCell`` (TF 2.x; gone from Keras 3): the LSTM's three
  arrays, then ``input_gate_peephole_weights [H]``, ``forget_gate_peephole_weights [H]``,
  ``output_gate_peephole_weights [H]``: our ``peephole`` rows ``p_i, p_f, p_o``.

Keras layers built with ``use_bias=False`` are not supported (pass a zero bias instead).

Whole models: :func:`model_to_keras` and :func:`model_from_keras` move a
:class:`~rnnlab.models.SequenceModel` (recurrent stack, optionally bidirectional, and the dense
head) to and from the ``get_weights()`` list of the Keras ``Sequential`` with the same layers
(the seed notes' ``LSTM(return_sequences=True) ... Dropout ... Dense`` models).

Cells are named by their registry name (``"lstm"``, ``"gru"``, ``"rnn"``, ``"peephole"``) or
given as cell instances; an instance is also checked against what the other framework can
express (width, activations, ``reset_after``).

Example::

    >>> import jax
    >>> from rnnlab.cells import LSTM
    >>> from rnnlab.convert import from_torch, to_torch
    >>> params = LSTM(hidden_size=5).init(jax.random.key(0), input_size=3)
    >>> sd = to_torch("lstm", params)
    >>> {k: v.shape for k, v in sorted(sd.items())}  # doctest: +NORMALIZE_WHITESPACE
    {'bias_hh_l0': (20,), 'bias_ih_l0': (20,), 'weight_hh_l0': (20, 5),
     'weight_ih_l0': (20, 3)}
    >>> bool((from_torch("lstm", sd)["kernel"] == params["kernel"]).all())
    True
"""

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnlab.cells.base import Cell, HiddenCarry, LSTMCarry

__all__ = [
    "carries_from_torch", "carries_to_torch", "from_keras", "from_torch", "model_from_keras",
    "model_to_keras", "stack_from_torch", "stack_to_torch", "to_keras", "to_torch",
]

NumpyParams = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What conversion needs to know about a cell family."""

    num_gates: int
    keras_gate_order: tuple[int, ...]  # our gate blocks, in Keras' order
    keras_name: str
    # PyTorch's (activation, recurrent_activation) pairs; empty: no PyTorch counterpart
    torch_activations: tuple[tuple[str, str | None], ...] = ()
    reset_gate: bool = False  # a GRU: recurrent_bias when reset_after, else one bias
    extra: tuple[str, ...] = ()  # parameters besides kernel, recurrent_kernel, (recurrent_)bias


_TORCH_GATED = (("tanh", "sigmoid"),)
_LAYOUTS: dict[str, _Layout] = {
    "lstm": _Layout(4, (0, 1, 2, 3), "LSTM", torch_activations=_TORCH_GATED),
    "peephole": _Layout(4, (0, 1, 2, 3), "PeepholeLSTMCell", extra=("peephole",)),
    # Keras' GRU gates are z, r, h; ours r, z, n: the first two blocks swap.
    "gru": _Layout(3, (1, 0, 2), "GRU", torch_activations=_TORCH_GATED, reset_gate=True),
    "rnn": _Layout(1, (0,), "SimpleRNN", torch_activations=(("tanh", None), ("relu", None))),
}

_TORCH_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")


# ---- helpers ---------------------------------------------------------------------------------
def _as_numpy(x: Any, what: str) -> np.ndarray:
    """A NumPy copy of an array-like (NumPy, JAX, or a torch tensor, without importing torch)."""
    if hasattr(x, "detach"):  # torch.Tensor, possibly requiring grad or on a GPU
        x = x.detach().cpu().numpy()
    arr = np.array(x, copy=True)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{what} must be a floating-point array; got dtype {arr.dtype}")
    return arr


def _layout(cell: str | Cell, framework: str = "Keras") -> tuple[str, _Layout]:
    """The registry name and layout of ``cell`` (a name or an instance); ``framework`` names
    the other side in the message for a cell it has no layer for (``Keras`` or ``PyTorch``)."""
    if isinstance(cell, Cell):
        name = getattr(type(cell), "registered_name", None)
    elif isinstance(cell, str):
        name = cell
    else:
        raise TypeError(f"cell must be a cell name or a Cell instance; got {type(cell).__name__}")
    if name not in _LAYOUTS or (framework == "PyTorch" and not _LAYOUTS[name].torch_activations):
        converts = sorted(n for n, v in _LAYOUTS.items()
                          if framework != "PyTorch" or v.torch_activations)
        raise ValueError(f"cell {name!r} has no {framework} counterpart; {framework} converts "
                         f"{converts}")
    if isinstance(cell, Cell) and getattr(cell, "variant", "vanilla") != "vanilla":
        raise ValueError(f"cell.variant={cell.variant!r} has no PyTorch or Keras layer; only "
                         "variant='vanilla' converts")
    return name, _LAYOUTS[name]


def _torch_layout(cell: str | Cell) -> tuple[str, _Layout]:
    """The name and layout of a cell PyTorch has, checking an instance's activations and reset form
    against what PyTorch's modules compute."""
    name, lay = _layout(cell, "PyTorch")
    if isinstance(cell, Cell):
        acts = (getattr(cell, "activation", None), getattr(cell, "recurrent_activation", None))
        if acts not in lay.torch_activations:
            raise ValueError(f"PyTorch's {name} computes (activation, recurrent_activation) in "
                             f"{list(lay.torch_activations)}; the cell has {acts}")
        if lay.reset_gate and not cell.reset_after:
            raise ValueError("PyTorch's GRU applies the reset gate after the recurrent "
                             "product; only GRU(reset_after=True) converts")
    return name, lay


def _reset_after(cell: str | Cell, params: Mapping[str, Any]) -> bool:
    """GRU: the cell's option when given an instance, otherwise ``recurrent_bias``'s presence."""
    if isinstance(cell, Cell):
        return bool(cell.reset_after)
    return "recurrent_bias" in params


def _check_params(cell: str | Cell, params: Mapping[str, Any]) -> tuple[NumpyParams, int, int]:
    """Our params as NumPy with their shapes checked; returns ``(params, D, H)``."""
    name, lay = _layout(cell)
    if "cell" in params and "kernel" not in params:
        raise ValueError("params look like a Recurrent layer's subtree {'cell': ...}; pass "
                         "params['cell'] (the cell's own parameters)")
    expected = {"kernel", "recurrent_kernel", "bias", *lay.extra}
    if lay.reset_gate and _reset_after(cell, params):
        expected.add("recurrent_bias")
    if set(params) != expected:
        raise ValueError(f"{name} params must have keys {sorted(expected)}; got {sorted(params)}")
    p = {k: _as_numpy(v, f"params[{k!r}]") for k, v in params.items()}
    if p["kernel"].ndim != 2 or p["recurrent_kernel"].ndim != 2:
        raise ValueError(f"kernel must be [D, G] and recurrent_kernel [H, G]; got "
                         f"{p['kernel'].shape} and {p['recurrent_kernel'].shape}")
    D, G = p["kernel"].shape
    H = p["recurrent_kernel"].shape[0]
    if G != lay.num_gates * H or p["recurrent_kernel"].shape != (H, G):
        raise ValueError(f"{name} has {lay.num_gates} gates: kernel must be [D, {lay.num_gates}H] "
                         f"and recurrent_kernel [H, {lay.num_gates}H]; got "
                         f"{p['kernel'].shape} and {p['recurrent_kernel'].shape}")
    for k in ("bias", "recurrent_bias"):
        if k in p and p[k].shape != (G,):
            raise ValueError(f"{k} must be [G]=({G},); got {p[k].shape}")
    if "peephole" in p and p["peephole"].shape != (3, H):
        raise ValueError(f"peephole must be [3, H]=(3, {H}); got {p['peephole'].shape}")
    if isinstance(cell, Cell) and cell.hidden_size != H:
        raise ValueError(f"params have H={H} but the cell has hidden_size={cell.hidden_size}")
    return p, D, H


def _suffix(layer: int, reverse: bool) -> str:
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer) or layer < 0:
        raise ValueError(f"layer must be an int >= 0 (PyTorch's _l0, _l1, ...); got {layer!r}")
    return f"_l{layer}" + ("_reverse" if reverse else "")


def _check_dtype(dtype) -> None:
    """Refuses a ``dtype=`` to cast weights to that is not a floating-point type (an integer
    one turned every weight into 0)."""
    if dtype is not None and not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"dtype must be a floating-point type (e.g. np.float32); got "
                        f"{np.dtype(dtype)}")


def _permute_gates(w: np.ndarray, order: Sequence[int], num_gates: int) -> np.ndarray:
    """Reorders the gate blocks along the last axis: block ``j`` of the result is block
    ``order[j]`` of ``w``."""
    blocks = np.split(w, num_gates, axis=-1)
    return np.concatenate([blocks[j] for j in order], axis=-1)


def _inverse(order: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(j) for j in np.argsort(order))


# ---- PyTorch, one layer ----------------------------------------------------------------------
def to_torch(cell: str | Cell, params: Mapping[str, Any], *, layer: int = 0,
             reverse: bool = False, gradient: bool = False) -> dict[str, np.ndarray]:
    """Our cell parameters as one layer of a PyTorch ``state_dict`` (see the module docstring).

    Args:
      cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (or an instance).
      params: the cell's parameters (``Recurrent``'s ``params["cell"]``).
      layer: the layer index ``k`` in the keys (``weight_ih_l{k}``).
      reverse: name the keys for the backward direction (``..._reverse``).
      gradient: ``params`` is a gradient. For the LSTM and RNN, whose bias PyTorch splits in
        two summands, both of PyTorch's bias gradients equal our bias's gradient, so both get
        it; otherwise the bias is exported as ``(bias, zeros)``, which sums to it.

    Returns:
      ``{"weight_ih_l{k}": [G, D], "weight_hh_l{k}": [G, H], "bias_ih_l{k}": [G],
      "bias_hh_l{k}": [G]}`` as NumPy arrays of the params' dtype.
    """
    _, lay = _torch_layout(cell)
    if lay.reset_gate and not _reset_after(cell, params):
        raise ValueError("PyTorch's GRU applies the reset gate after the recurrent product; "
                         "only GRU(reset_after=True) params (with recurrent_bias) convert")
    p, _, _ = _check_params(cell, params)
    s = _suffix(layer, reverse)
    if not lay.reset_gate:
        bias_ih = p["bias"]
        bias_hh = p["bias"].copy() if gradient else np.zeros_like(p["bias"])
    else:
        bias_ih, bias_hh = p["bias"], p["recurrent_bias"]
    return {
        f"weight_ih{s}": np.ascontiguousarray(p["kernel"].T),
        f"weight_hh{s}": np.ascontiguousarray(p["recurrent_kernel"].T),
        f"bias_ih{s}": bias_ih,
        f"bias_hh{s}": bias_hh,
    }


def from_torch(cell: str | Cell, state_dict: Mapping[str, Any], *, layer: int = 0,
               reverse: bool = False, prefix: str = "", dtype=None) -> NumpyParams:
    """One layer of a PyTorch ``nn.LSTM``/``nn.GRU``/``nn.RNN`` ``state_dict`` as our cell
    parameters (see the module docstring). Other layers' keys are ignored.

    Args:
      cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (or an instance).
      state_dict: mapping of key to tensor or array (torch tensors are detached and copied).
      layer, reverse: which layer and direction to read.
      prefix: prepended to every key, e.g. ``"encoder.rnn."`` for a submodule's entries.
      dtype: cast the result to this NumPy dtype (default: keep PyTorch's).

    Returns:
      ``{"kernel": [D, G], "recurrent_kernel": [H, G], "bias": [G]}`` (and
      ``"recurrent_bias": [G]`` for the GRU) as NumPy arrays.
    """
    _check_dtype(dtype)
    name, lay = _torch_layout(cell)
    s = _suffix(layer, reverse)
    keys = {k: f"{prefix}{k}{s}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    missing = [keys[k] for k in ("weight_ih", "weight_hh") if keys[k] not in state_dict]
    if missing:
        present = sorted(k for k in state_dict if k.startswith(prefix))
        raise ValueError(f"state_dict has no {missing} (layer={layer}, reverse={reverse}, "
                         f"prefix={prefix!r}); its keys: {present}")
    w_ih = _as_numpy(state_dict[keys["weight_ih"]], keys["weight_ih"])
    w_hh = _as_numpy(state_dict[keys["weight_hh"]], keys["weight_hh"])
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ValueError(f"{keys['weight_ih']} must be [G, D] and {keys['weight_hh']} [G, H]; "
                         f"got {w_ih.shape} and {w_hh.shape}")
    G, H = w_hh.shape
    if G != lay.num_gates * H or w_ih.shape[0] != G:
        raise ValueError(
            f"PyTorch {name} has {lay.num_gates} gates: {keys['weight_ih']} must be "
            f"[{lay.num_gates}H, D] and {keys['weight_hh']} [{lay.num_gates}H, H]; got "
            f"{w_ih.shape} and {w_hh.shape}")
    if isinstance(cell, Cell) and cell.hidden_size != H:
        raise ValueError(f"{keys['weight_hh']} has H={H} but the cell has "
                         f"hidden_size={cell.hidden_size}")
    has_bias = [keys[k] in state_dict for k in ("bias_ih", "bias_hh")]
    if any(has_bias) and not all(has_bias):
        raise ValueError(f"state_dict must have both {keys['bias_ih']} and {keys['bias_hh']} "
                         f"or neither (bias=False)")
    if all(has_bias):
        b_ih = _as_numpy(state_dict[keys["bias_ih"]], keys["bias_ih"])
        b_hh = _as_numpy(state_dict[keys["bias_hh"]], keys["bias_hh"])
        for k, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
            if b.shape != (G,):
                raise ValueError(f"{keys[k]} must be [G]=({G},); got {b.shape}")
    else:
        b_ih = b_hh = np.zeros((G,), w_ih.dtype)
    params = {"kernel": np.ascontiguousarray(w_ih.T),
              "recurrent_kernel": np.ascontiguousarray(w_hh.T)}
    if not lay.reset_gate:  # LSTM, RNN: PyTorch's two biases are summands of ours
        params["bias"] = b_ih + b_hh
    else:
        params["bias"], params["recurrent_bias"] = b_ih, b_hh
    if dtype is not None:
        params = {k: v.astype(dtype) for k, v in params.items()}
    return params


# ---- PyTorch, whole stacks -------------------------------------------------------------------
def _per_layer(cells: str | Cell | Sequence[str | Cell], num_layers: int) -> list[str | Cell]:
    if isinstance(cells, (str, Cell)):
        return [cells] * num_layers
    cells = list(cells)
    if len(cells) != num_layers:
        raise ValueError(f"got {len(cells)} cells for {num_layers} layers")
    return cells


def stack_to_torch(cells: str | Cell | Sequence[str | Cell], stack_params: Mapping[str, Any], *,
                   prefix: str = "", gradient: bool = False) -> dict[str, np.ndarray]:
    """A :class:`~rnnlab.recurrent.RecurrentStack`'s params (``{"layer_0": {"cell": ...},
    "layer_0_reverse": {"cell": ...}, ...}``) as a multi-layer PyTorch ``state_dict``.

    Args:
      cells: one cell (name or instance) for every layer, or one per layer.
      stack_params: the stack's parameter subtree.
      prefix: prepended to every key.
      gradient: see :func:`to_torch`.

    PyTorch's modules have one ``hidden_size`` for all layers; a stack whose widths differ
    is refused, as is a learned initial carry (PyTorch takes initial states as inputs).
    """
    layers = _stack_layers(stack_params)
    cells = _per_layer(cells, len(layers))
    out: dict[str, np.ndarray] = {}
    widths = set()
    for k, (directions, cell) in enumerate(zip(layers, cells, strict=True)):
        for reverse, sub in directions:
            if set(sub) != {"cell"}:
                extra = sorted(set(sub) - {"cell"})
                raise ValueError(f"layer {k} has {extra} besides 'cell': PyTorch has no learned "
                                 f"initial carry; pass initial states to the module instead")
            sd = to_torch(cell, sub["cell"], layer=k, reverse=reverse, gradient=gradient)
            widths.add(sd[f"weight_hh{_suffix(k, reverse)}"].shape[1])
            out.update({prefix + key: v for key, v in sd.items()})
    if len(widths) > 1:
        raise ValueError(f"PyTorch's modules have one hidden_size for all layers; the stack has "
                         f"widths {sorted(widths)}")
    return out


def _stack_layers(stack_params: Mapping[str, Any]) -> list[list[tuple[bool, Any]]]:
    """``[[(False, layer_0), (True, layer_0_reverse)], ...]``, checking that the layer names
    run from 0 without gaps and that every layer or none has a reverse direction."""
    pattern = re.compile(r"^layer_(\d+)(_reverse)?$")
    found: dict[tuple[int, bool], Any] = {}
    for key, sub in stack_params.items():
        m = pattern.match(key)
        if m is None:
            raise ValueError(f"stack params have key {key!r}; expected layer_<i>[_reverse]")
        found[(int(m.group(1)), m.group(2) is not None)] = sub
    return _ordered_layers(found, lambda k, r: f"layer_{k}" + ("_reverse" if r else ""))


def _ordered_layers(found: Mapping[tuple[int, bool], Any], label) -> list[list[tuple[bool, Any]]]:
    forward = sorted(k for k, r in found if not r)
    if not forward or forward != list(range(len(forward))):
        raise ValueError(f"forward layers must be numbered 0..L-1; got {forward}")
    reverse = sorted(k for k, r in found if r)
    if reverse and reverse != forward:
        raise ValueError(f"a bidirectional stack needs a reverse direction for every layer; "
                         f"forward {[label(k, False) for k in forward]}, reverse "
                         f"{[label(k, True) for k in reverse]}")
    bidirectional = bool(reverse)
    return [[(r, found[(k, r)]) for r in ((False, True) if bidirectional else (False,))]
            for k in forward]


def stack_from_torch(cells: str | Cell | Sequence[str | Cell], state_dict: Mapping[str, Any], *,
                     prefix: str = "", dtype=None) -> dict[str, dict[str, NumpyParams]]:
    """A multi-layer (optionally bidirectional) PyTorch ``state_dict`` as the params of a
    :class:`~rnnlab.recurrent.RecurrentStack` with ``merge="concat"``: ``{"layer_0": {"cell":
    ...}, "layer_0_reverse": {"cell": ...}, ...}``. The number of layers and the direction
    count are read from the keys; keys under ``prefix`` that are not RNN weights (such as
    ``weight_hr``) raise.
    """
    _check_dtype(dtype)
    found: dict[tuple[int, bool], None] = {}
    for key in state_dict:
        if not key.startswith(prefix):
            continue
        m = _TORCH_KEY.match(key[len(prefix):])
        if m is None:
            raise ValueError(f"state_dict key {key!r} is not a recurrent weight "
                             f"(weight_ih/weight_hh/bias_ih/bias_hh_l<k>[_reverse]); "
                             f"proj_size has no counterpart here")
        found[(int(m.group(2)), m.group(3) is not None)] = None
    if not found:
        raise ValueError(f"state_dict has no keys under prefix {prefix!r}; keys: "
                         f"{sorted(state_dict)}")
    layers = _ordered_layers(found, lambda k, r: f"weight_ih{_suffix(k, r)}")
    cells = _per_layer(cells, len(layers))
    out = {}
    for k, (directions, cell) in enumerate(zip(layers, cells, strict=True)):
        for reverse, _ in directions:
            name = f"layer_{k}" + ("_reverse" if reverse else "")
            out[name] = {"cell": from_torch(cell, state_dict, layer=k, reverse=reverse,
                                            prefix=prefix, dtype=dtype)}
    return out


def carries_from_torch(h_n: Any, c_n: Any = None, *, bidirectional: bool = False) -> tuple:
    """PyTorch's final (or initial) states ``h_n [L*dirs, B, H]`` (and ``c_n`` for the LSTM) as
    :class:`~rnnlab.recurrent.RecurrentStack`'s carries: one ``LSTMCarry(h, c)`` or
    ``HiddenCarry(h)`` per layer, a ``(forward, backward)`` pair of them when bidirectional.
    Row ``l * dirs + d`` of ``h_n`` is layer ``l``, direction ``d``."""
    h = _as_numpy(h_n, "h_n")
    c = None if c_n is None else _as_numpy(c_n, "c_n")
    if h.ndim != 3 or (c is not None and c.shape != h.shape):
        raise ValueError(f"h_n (and c_n) must be [L*dirs, B, H] of one shape; got {h.shape}"
                         + ("" if c is None else f" and {c.shape}"))
    dirs = 2 if bidirectional else 1
    if h.shape[0] % dirs:
        raise ValueError(f"bidirectional h_n needs an even first dimension; got {h.shape}")

    def carry(row):
        return HiddenCarry(h[row]) if c is None else LSTMCarry(h[row], c[row])

    layers = []
    for layer in range(h.shape[0] // dirs):
        rows = [carry(layer * dirs + d) for d in range(dirs)]
        layers.append(tuple(rows) if bidirectional else rows[0])
    return tuple(layers)


def carries_to_torch(carries: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The inverse of :func:`carries_from_torch`: ``(h_n, c_n)`` with ``c_n`` ``None`` for
    carries without a cell state."""
    rows = []
    for layer in carries:
        rows.extend(layer if isinstance(layer, tuple) and not hasattr(layer, "_fields")
                    else [layer])
    h = np.stack([_as_numpy(r.h, "h") for r in rows])
    c = np.stack([_as_numpy(r.c, "c") for r in rows]) if hasattr(rows[0], "c") else None
    return h, c


# ---- Keras -----------------------------------------------------------------------------------
def to_keras(cell: str | Cell, params: Mapping[str, Any]) -> list[np.ndarray]:
    """Our cell parameters as a Keras layer's ``get_weights()`` list (see the module
    docstring): ``[kernel, recurrent_kernel, bias]`` in Keras' gate order, the GRU's bias
    ``[2, 3H]`` with ``reset_after``, and the peephole LSTM's three peephole vectors after."""
    _, lay = _layout(cell)
    p, _, _ = _check_params(cell, params)
    order, n = lay.keras_gate_order, lay.num_gates
    weights = [_permute_gates(p["kernel"], order, n), _permute_gates(p["recurrent_kernel"],
                                                                     order, n)]
    if "recurrent_bias" in p:
        weights.append(np.stack([_permute_gates(p["bias"], order, n),
                                 _permute_gates(p["recurrent_bias"], order, n)]))
    else:
        weights.append(_permute_gates(p["bias"], order, n))
    if "peephole" in p:
        weights.extend(row.copy() for row in p["peephole"])
    return weights


def from_keras(cell: str | Cell, weights: Sequence[Any], *, dtype=None) -> NumpyParams:
    """A Keras layer's ``get_weights()`` list as our cell parameters (inverse of
    :func:`to_keras`). For the GRU, a bias ``[2, 3H]`` means ``reset_after=True`` and gives
    ``recurrent_bias``; a bias ``[3H]`` means ``reset_after=False``."""
    _check_dtype(dtype)
    _, lay = _layout(cell)
    names = ["kernel", "recurrent_kernel", "bias"]
    if "peephole" in lay.extra:
        names += [f"{g}_gate_peephole_weights" for g in ("input", "forget", "output")]
    if len(weights) != len(names):
        raise ValueError(f"Keras {lay.keras_name} get_weights() (use_bias=True) is {names}; "
                         f"got {len(weights)} arrays with shapes "
                         f"{[np.shape(w) for w in weights]}")
    w = [_as_numpy(x, f"weights[{i}]") for i, x in enumerate(weights)]
    back, n = _inverse(lay.keras_gate_order), lay.num_gates
    params = {"kernel": w[0], "recurrent_kernel": w[1]}
    bias = w[2]
    if lay.reset_gate and bias.ndim == 2:
        if bias.shape[0] != 2 or bias.shape[1] != w[0].shape[-1]:
            raise ValueError(f"Keras GRU(reset_after=True) bias must be [2, 3H] = (2, "
                             f"{w[0].shape[-1]}) for a kernel of shape {w[0].shape}; got "
                             f"{bias.shape}")
        params["bias"], params["recurrent_bias"] = bias[0], bias[1]
    elif bias.ndim != 1:
        raise ValueError(f"Keras {lay.keras_name} bias must be [{n}H]; got {bias.shape}")
    else:
        params["bias"] = bias
    if "peephole" in lay.extra:
        shapes = [v.shape for v in w[3:6]]
        if len(set(shapes)) != 1 or len(shapes[0]) != 1:
            raise ValueError(f"Keras {lay.keras_name} peephole weights must be three [H] "
                             f"vectors; got shapes {shapes}")
        params["peephole"] = np.stack(w[3:6])
    # Shapes are checked in our order's terms after the permutation, which needs split-able
    # last axes: check the widths first.
    for k in ("kernel", "recurrent_kernel", "bias", "recurrent_bias"):
        if k in params and (params[k].ndim == 0 or params[k].shape[-1] % n):
            raise ValueError(f"Keras {lay.keras_name} {k} must have a last axis of {n}H; "
                             f"got shape {params[k].shape}")
        if k in params:
            params[k] = _permute_gates(params[k], back, n)
    checked, _, _ = _check_params(cell, params)
    if dtype is not None:
        checked = {k: v.astype(dtype) for k, v in checked.items()}
    return checked


# ---- whole models (Keras) --------------------------------------------------------------------
def _model_layers(model) -> list[tuple[str, Any, bool]]:
    """``(params key, cell, reverse)`` of every recurrent layer of a SequenceModel, in Keras'
    weight order (``Bidirectional``: forward, then backward)."""
    from rnnlab.models import SequenceModel

    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a rnnlab.models.SequenceModel; got {type(model).__name__}")
    if model.learn_initial_carry:
        raise ValueError("model.learn_initial_carry=True has no Keras counterpart (Keras' "
                         "recurrent layers start from zeros)")
    if model.bidirectional and model.merge != "concat":
        raise ValueError(f"model.merge={model.merge!r}: only 'concat' (Keras' Bidirectional "
                         "merge_mode='concat' default) is converted")
    layers = []
    for i, cell in enumerate(model.cells):
        layers.append((f"layer_{i}", cell, False))
        if model.bidirectional:
            layers.append((f"layer_{i}_reverse", cell, True))
    return layers


def _dense_names(model) -> list[str]:
    return [f"head_{i}" for i in range(len(model.head_sizes))] + ["output"]


def model_to_keras(model, params: Mapping[str, Any]) -> list[np.ndarray]:
    """A :class:`~rnnlab.models.SequenceModel`'s parameters as the ``get_weights()`` list of
    the Keras model with the same layers: each recurrent layer's weights (:func:`to_keras`;
    a bidirectional layer: forward then backward, as ``keras.layers.Bidirectional``), then
    each ``Dense`` of the head (``head_sizes``, then the output layer) as ``[kernel [in,
    out], bias [out]]``, Keras' own layout. ``Dropout`` layers have no weights. Load it with
    ``keras_model.set_weights(weights)``.

    Args:
      model: the SequenceModel (its cells give the layouts).
      params: ``model.init(...)["params"]`` (or the ``params`` collection's dict).

    Raises:
      TypeError, ValueError: a model or parameters Keras cannot express (learned initial
        carry, ``merge="sum"``, a cell without a Keras layer, missing keys)."""
    if "params" in params and "recurrent" not in params:
        params = params["params"]
    out: list[np.ndarray] = []
    stack = params["recurrent"]
    for key, cell, _ in _model_layers(model):
        if key not in stack:
            raise ValueError(f"params['recurrent'] has no {key!r}; got {sorted(stack)}")
        out.extend(to_keras(cell, stack[key]["cell"]))
    for name in _dense_names(model):
        out.append(_as_numpy(params[name]["kernel"], f"{name}.kernel"))
        out.append(_as_numpy(params[name]["bias"], f"{name}.bias"))
    return out


def model_from_keras(model, weights: Sequence[Any], *, dtype=None) -> dict[str, Any]:
    """The inverse of :func:`model_to_keras`: a Keras model's ``get_weights()`` list as the
    ``params`` dict of ``model`` (use it as ``model.apply({"params": params}, x)``).

    Raises:
      ValueError: the list's length or any array's shape does not fit ``model``."""
    _check_dtype(dtype)
    weights = list(weights)
    params: dict[str, Any] = {"recurrent": {}}
    at = 0
    for key, cell, _ in _model_layers(model):
        _, lay = _layout(cell)
        n = 3 + (3 if "peephole" in lay.extra else 0)
        if at + n > len(weights):
            raise ValueError(f"the Keras weights end at layer {key} (need {at + n} arrays, got "
                             f"{len(weights)})")
        cell_params = from_keras(cell, weights[at:at + n], dtype=dtype)
        params["recurrent"][key] = {"cell": cell_params}
        at += n
    widths = [*model.head_sizes, model.output_size]
    for name, width in zip(_dense_names(model), widths, strict=True):
        if at + 2 > len(weights):
            raise ValueError(f"the Keras weights end before Dense layer {name!r}")
        kernel = _as_numpy(weights[at], f"weights[{at}]")
        bias = _as_numpy(weights[at + 1], f"weights[{at + 1}]")
        if kernel.ndim != 2 or kernel.shape[1] != width or bias.shape != (width,):
            raise ValueError(f"Keras Dense {name!r} must be kernel [in, {width}] and bias "
                             f"[{width}]; got {kernel.shape} and {bias.shape}")
        if dtype is not None:
            kernel, bias = kernel.astype(dtype), bias.astype(dtype)
        params[name] = {"kernel": kernel, "bias": bias}
        at += 2
    if at != len(weights):
        raise ValueError(f"the model takes {at} Keras arrays; got {len(weights)}")
    return params
