"""The shared cell test-suite: run it, unchanged, on every new cell.

Shape legend: B batch, T time, D input features, H hidden units, G gate pre-activations.

Example (in a test file, or a notebook; nothing here needs pytest)::

    >>> from rnnlab.cells import GRU
    >>> from rnnlab.testing import check_cell
    >>> check_cell(GRU(hidden_size=4), input_size=3)  # raises AssertionError on a failure

:func:`check_cell` runs every check below; each one can also be called on its own. A failure
raises ``AssertionError`` whose message starts with the cell, then ``rule <name>:`` (one of
:data:`RULES`), then what was received, with shapes and dtypes; an exception raised inside the
cell's own code (a shape mismatch in ``step``, say) is caught and reported the same way, with
the shapes of the arguments the cell was called with.

* :func:`check_init`: ``init`` gives ``param_dtype`` leaves and ``param_count`` equals the
  number of scalars in the tree (at two input sizes); ``initial_carry`` is a ``carry_type``
  NamedTuple of ``[B, H]`` zeros with an ``h`` field.
* :func:`check_shapes`: ``project`` gives ``[B, T, G]`` and rejects the wrong feature count
  with a ``ValueError``; ``step`` keeps the carry's structure, shapes and dtypes and emits
  ``h_BxH == carry.h`` (the model's ``readout="last"`` and the gradient probe rely on it).
* :func:`check_transforms`: ``jit`` and ``vmap`` (over the batch of batches and over stacked
  params) give the eager values; ``grad`` is finite, reaches every parameter, and agrees with
  forward-mode ``jvp``.
* :func:`check_drivers`: :func:`~rnnlab.recurrent.scan_driver` equals the Python
  :func:`~rnnlab.recurrent.loop_driver`, forward and reverse, with and without ``jit``,
  ``unroll`` 1 and 3, with and without sequence lengths (one of them 0).
* :func:`check_masking`: a padded batch with ``seq_lengths`` gives, on valid steps, the outputs
  of each sequence run alone unpadded, zeros on padded steps and the same final carry, in both
  directions; the padding holds random values, so nothing may leak from it.
* :func:`check_fused` (cells with ``update``, ``cell.fusable``): ``step`` equals
  ``update(params, carry, xp, carry.h @ U)``, and the gradients of a loss over a padded
  sequence with respect to the parameters, the input projection, the initial carry and the
  gradient probe from :func:`~rnnlab.recurrent.fused_scan_driver` equal those of autodiff
  through :func:`~rnnlab.recurrent.scan_driver`, forward and reverse, with and without remat.
* :func:`check_numpy_reference`: with a float64 NumPy transcription of the cell's step, the
  float32 cell (through ``project`` and the scan driver) matches it to ``1e-5`` over a
  sequence, outputs and final carry.

Every check runs on perturbed parameters (random noise added to every leaf, so biases,
peepholes and the like are not at their tidy initial values), random inputs and a random
initial carry. ``seed`` makes the draws reproducible; it is an argument, never hidden.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells.base import Cell, dtype_of
from rnnlab.recurrent import fused_scan_driver, loop_driver, scan_driver

# The contract's rules, as named in failure messages.
RULES = {
    "param_count": "param_count(D) equals the number of scalars init(key, D) creates",
    "param_dtype": "every parameter leaf has param_dtype",
    "carry_type": "initial_carry and step return cell.carry_type, a NamedTuple with an h field",
    "carry_shape": "every carry field is [B, H] in the compute dtype; initial_carry is zeros",
    "project": "project(params, x_BxTxD) gives [B, T, G] and refuses a wrong feature count",
    "step": "step(params, carry, xp_BxG) -> (carry, h_BxH) runs on [B, G] projections",
    "output": "step's output h_BxH is [B, H] and equals the new carry's h",
    "transforms": "jit, vmap and grad agree with eager code; every parameter gets a gradient",
    "driver": "the scan driver equals the Python loop driver (reverse, unroll, lengths)",
    "masking": "padded steps change nothing: padded outputs are zeros, carries unchanged",
    "reference": "the cell matches its float64 NumPy reference",
    "fused": "a cell with update: step equals update(h @ U), and fused BPTT gives autodiff's "
             "gradients",
}

# (params as float64 NumPy arrays, carry of float64 [B, H] arrays, x_BxD float64)
#   -> (new carry, h_BxH)
NumpyStep = Callable[[Any, Any, np.ndarray], tuple[Any, np.ndarray]]

BATCH = 3  # B of every check
TIME = 5  # T of every check
RTOL = 1e-5  # float32 against float32 computed another way (jit, scan, vmap, padding)
ATOL = 1e-6
REFERENCE_TOL = 1e-5  # float32 cell against the float64 NumPy reference (rtol and atol)
PERTURBATION = 0.3  # std of the noise added to every parameter leaf


# ---- helpers (also useful in a cell's own tests) ----------------------------------------------
def perturb_params(params, rng: np.random.Generator, scale: float = PERTURBATION):
    """``params`` plus ``scale``-std Gaussian noise on every leaf (drawn on the host, cast to
    each leaf's dtype), so zero biases, unit forget biases and the like take generic values."""
    return jax.tree.map(
        lambda p: jnp.asarray(np.asarray(p) + scale * rng.standard_normal(p.shape), p.dtype),
        params)


def random_like(shapes, rng: np.random.Generator, scale: float = 0.5):
    """Gaussian values (std ``scale``) for a tree of shapes, e.g. ``jax.eval_shape`` of a Flax
    ``init``: random parameters without compiling an initializer."""
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes)


def random_carry(cell: Cell, batch_size: int, rng: np.random.Generator, scale: float = 0.5):
    """A carry of ``cell.carry_type`` with random ``[B, H]`` fields in the compute dtype."""
    template = jax.eval_shape(functools.partial(cell.initial_carry, None, batch_size))
    return jax.tree.map(
        lambda z: jnp.asarray(scale * rng.standard_normal(z.shape), z.dtype), template)


def to_numpy64(tree):
    """Every leaf as a float64 NumPy array (NamedTuples keep their type)."""
    return jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), tree)


def _assert_trees_close(actual, desired, what: str, rtol: float = RTOL, atol: float = ATOL):
    a_leaves, a_def = jax.tree.flatten(actual)
    d_leaves, d_def = jax.tree.flatten(desired)
    assert a_def == d_def, f"{what}: tree structures differ: {a_def} vs {d_def}"
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(actual)[0]]
    for path, a, d in zip(paths, a_leaves, d_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(d, np.float64),
                                   rtol=rtol, atol=atol, err_msg=f"{what}, leaf {path}")


def _name(cell: Cell) -> str:
    return f"{type(cell).__name__}(hidden_size={cell.hidden_size})"


def _rule(cell: Cell, rule: str) -> str:
    """The head of a failure message: the cell and the broken rule."""
    return f"{_name(cell)}: rule {rule} ({RULES[rule]})"


def describe(tree) -> str:
    """Shapes and dtypes of a tree, e.g. ``HiddenCarry(h=float32[3, 4])``, for messages."""
    def leaf(v):
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            return f"{v.dtype}[{', '.join(map(str, v.shape))}]"
        return type(v).__name__

    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        inner = ", ".join(f"{k}={describe(v)}" for k, v in tree._asdict().items())
        return f"{type(tree).__name__}({inner})"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in tree.items()) + "}"
    if isinstance(tree, list | tuple):
        inner = ", ".join(describe(v) for v in tree)
        return f"{type(tree).__name__}({inner})"
    return leaf(tree)


def _call(cell: Cell, rule: str, what: str, fn, *args):
    """``fn(*args)``; an exception inside the cell's code becomes an ``AssertionError`` naming
    the rule, the call and the shapes of its arguments."""
    try:
        return fn(*args)
    except AssertionError:
        raise
    except Exception as err:
        shapes = ", ".join(describe(a) for a in args)
        raise AssertionError(f"{_rule(cell, rule)}: {what} raised {type(err).__name__} when "
                             f"called with ({shapes}): {err}") from err


def _cache_by_cell(build):
    """Caches ``build(cell, **options)`` per (hashable) cell, so that the checks share compiled
    programs; a cell that cannot be hashed is simply rebuilt each time."""
    cached = functools.lru_cache(maxsize=64)(build)

    @functools.wraps(build)
    def wrapper(cell, **options):
        try:
            hash(cell)
        except TypeError:
            return build(cell, **options)
        return cached(cell, **options)

    return wrapper


def _setup(cell: Cell, input_size: int, seed: int, batch_size: int = BATCH, time: int = TIME):
    """Perturbed params, random ``x_BxTxD`` and a random initial carry. Random draws come from
    NumPy and ``init`` runs eagerly: its small ops are compiled once and shared by all cells
    of the same sizes, where a jitted set-up would compile anew for every cell."""
    rng = np.random.default_rng(seed)
    params = perturb_params(cell.init(jax.random.key(seed), input_size), rng)
    x_BxTxD = jnp.asarray(rng.standard_normal((batch_size, time, input_size)),
                          dtype_of(cell.dtype))
    return params, x_BxTxD, random_carry(cell, batch_size, rng)


# ---- the checks -------------------------------------------------------------------------------
def check_init(cell: Cell, input_size: int, *, seed: int = 0) -> None:
    """Param dtypes, ``param_count`` against the tree (two input sizes), ``initial_carry``."""
    key = jax.random.key(seed)
    pdt = jnp.dtype(dtype_of(cell.param_dtype))
    carry_type = cell.carry_type
    assert isinstance(carry_type, type) and issubclass(carry_type, tuple) and hasattr(
        carry_type, "_fields") and "h" in carry_type._fields, (
        f"{_rule(cell, 'carry_type')}: carry_type is {carry_type!r}; expected a NamedTuple "
        "class with an 'h' field (HiddenCarry, LSTMCarry or your own)")
    for d in (input_size, input_size + 2):
        shapes = _call(cell, "param_count", f"init(key, {d})",
                       functools.partial(jax.eval_shape, functools.partial(cell.init,
                                                                           input_size=d)), key)
        real = int(sum(np.prod(s.shape, dtype=np.int64) for s in jax.tree.leaves(shapes)))
        count = _call(cell, "param_count", f"param_count({d})", cell.param_count, d)
        assert count == real, (
            f"{_rule(cell, 'param_count')}: param_count({d}) = {count} but init({d}) has "
            f"{real} scalars ({jax.tree.map(lambda s: s.shape, shapes)})")
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
            assert leaf.dtype == pdt, (f"{_rule(cell, 'param_dtype')}: param "
                                       f"{jax.tree_util.keystr(path)} has dtype {leaf.dtype}; "
                                       f"param_dtype is {cell.param_dtype}")
    params, _, _ = _setup(cell, input_size, seed)
    carry = _call(cell, "carry_type", f"initial_carry(params, {BATCH})", cell.initial_carry,
                  params, BATCH)
    assert isinstance(carry, carry_type), (
        f"{_rule(cell, 'carry_type')}: initial_carry returned {describe(carry)}; expected a "
        f"{carry_type.__name__}")
    cdt = jnp.dtype(dtype_of(cell.dtype))
    for field, value in carry._asdict().items():
        assert value.shape == (BATCH, cell.hidden_size) and value.dtype == cdt, (
            f"{_rule(cell, 'carry_shape')}: initial carry field {field!r} is "
            f"{value.dtype}{list(value.shape)}; expected {cdt}[B={BATCH}, H={cell.hidden_size}]")
        np.testing.assert_array_equal(
            np.asarray(value), np.zeros(value.shape),
            err_msg=f"{_rule(cell, 'carry_shape')}: initial carry {field!r} is not zeros")


def _check_step_shapes(cell: Cell, params, carry) -> None:
    """One ``step`` from shapes (``jax.eval_shape``): it keeps the carry's type, shapes and
    dtypes and outputs ``[B, H]`` in the compute dtype (rules carry_type, carry_shape,
    output)."""
    B, H = carry.h.shape[0], cell.hidden_size
    cdt = jnp.dtype(dtype_of(cell.dtype))
    xp_BxG = jax.ShapeDtypeStruct((B, cell.gate_size), cdt)
    new_carry, h_BxH = _call(cell, "step", "step(params, carry, xp_BxG)",
                             functools.partial(jax.eval_shape, cell.step), params, carry, xp_BxG)
    assert type(new_carry) is type(carry), (
        f"{_rule(cell, 'carry_type')}: step returned the carry {describe(new_carry)}; expected "
        f"a {type(carry).__name__} like {describe(carry)} (lax.scan needs the same structure "
        "every step)")
    for field in carry._fields:
        old, new = getattr(carry, field), getattr(new_carry, field)
        assert new.shape == old.shape and new.dtype == old.dtype, (
            f"{_rule(cell, 'carry_shape')}: step changed carry field {field!r} from "
            f"{describe(old)} to {describe(new)}")
    assert getattr(h_BxH, "shape", None) == (B, H) and h_BxH.dtype == cdt, (
        f"{_rule(cell, 'output')}: step output is {describe(h_BxH)}; expected "
        f"{cdt}[B={B}, H={H}]")


def check_runnable(cell: Cell, input_size: int) -> None:
    """What the scan driver needs of a cell, from shapes alone (``jax.eval_shape``: nothing
    is computed or compiled): ``init``, ``initial_carry`` of :attr:`Cell.carry_type`,
    ``project`` to ``[B, T, G]``, and a ``step`` that keeps the carry's structure, shapes and
    dtypes and outputs ``[B, H]``. rnnlab runs it on cells that do not ship with it when a run
    is built, so that a broken contract is named before anything is compiled or written
    (:func:`check_cell` checks all the rules, values too).

    Raises:
      AssertionError: naming the cell and the rule (:data:`RULES`)."""
    B, T, H, G = BATCH, TIME, cell.hidden_size, cell.gate_size
    cdt = jnp.dtype(dtype_of(cell.dtype))
    params = _call(cell, "param_count", f"init(key, {input_size})",
                   functools.partial(jax.eval_shape, functools.partial(
                       cell.init, input_size=input_size)), jax.random.key(0))
    carry = _call(cell, "carry_type", f"initial_carry(params, {B})",
                  functools.partial(jax.eval_shape, functools.partial(
                      cell.initial_carry, batch_size=B)), params)
    assert isinstance(carry, tuple) and hasattr(carry, "_fields") and "h" in carry._fields, (
        f"{_rule(cell, 'carry_type')}: initial_carry returned {describe(carry)}; expected a "
        f"NamedTuple with an 'h' field")
    for field, value in carry._asdict().items():
        assert value.shape == (B, H) and value.dtype == cdt, (
            f"{_rule(cell, 'carry_shape')}: initial carry field {field!r} is "
            f"{describe(value)}; expected {cdt}[B={B}, H={H}]")
    x = jax.ShapeDtypeStruct((B, T, input_size), cdt)
    xp = _call(cell, "project", "project(params, x_BxTxD)",
               functools.partial(jax.eval_shape, cell.project), params, x)
    assert getattr(xp, "shape", None) == (B, T, G), (
        f"{_rule(cell, 'project')}: project gave {describe(xp)}; expected "
        f"{cdt}[B={B}, T={T}, G={G}] (G = gate_size)")
    _check_step_shapes(cell, params, carry)


def check_shapes(cell: Cell, input_size: int, *, seed: int = 0) -> None:
    """``project`` and ``step`` shapes and dtypes; ``project`` rejects a wrong feature count;
    the step's output is the new carry's ``h``."""
    params, x_BxTxD, carry = _setup(cell, input_size, seed)
    B, T, _ = x_BxTxD.shape
    H, G = cell.hidden_size, cell.gate_size
    cdt = jnp.dtype(dtype_of(cell.dtype))
    xp_BxTxG = _call(cell, "project", "project(params, x_BxTxD)",
                     functools.partial(jax.eval_shape, cell.project), params, x_BxTxD)
    assert xp_BxTxG.shape == (B, T, G) and xp_BxTxG.dtype == cdt, (
        f"{_rule(cell, 'project')}: project gave {describe(xp_BxTxG)}; expected "
        f"{cdt}[B={B}, T={T}, G={G}] (G = gate_size = {cell.num_gates} gates · H={H})")
    wrong = jax.ShapeDtypeStruct((B, T, input_size + 1), cdt)
    try:
        jax.eval_shape(cell.project, params, wrong)
    except ValueError:
        pass
    except Exception as err:
        raise AssertionError(
            f"{_rule(cell, 'project')}: project on {input_size + 1} features (params for "
            f"input_size={input_size}) raised {type(err).__name__} ({err}); it must raise "
            "ValueError naming the shapes (Cell.check_input does)") from err
    else:
        raise AssertionError(f"{_rule(cell, 'project')}: project accepted {input_size + 1} "
                             f"features from params initialised for input_size={input_size}; "
                             "it must raise ValueError")
    _check_step_shapes(cell, params, carry)
    new_carry, h_BxH = _project_step(cell)(params, carry, x_BxTxD)
    np.testing.assert_array_equal(
        np.asarray(h_BxH), np.asarray(new_carry.h),
        err_msg=f"{_rule(cell, 'output')}: the step's output differs from the new carry's h "
                "(readout='last' and the gradient probe read carry.h as the output)")


@_cache_by_cell
def _project_step(cell: Cell):
    """``jit`` of project followed by one step on the first time step."""
    return jax.jit(lambda p, c, x_BxTxD: cell.step(p, c, cell.project(p, x_BxTxD)[:, 0]))


def _stack(trees):
    """Stacks pytrees of arrays along a new leading axis (on the host: no compilation)."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(v) for v in leaves]), *trees)


def _member(tree, n: int):
    return jax.tree.map(lambda v: np.asarray(v)[n], tree)


@_cache_by_cell
def _loss_grad_jvp(cell: Cell):
    """``jit`` of (grad, jvp) of a loss over a whole sequence, both from one program."""
    def loss(p, x_BxTxD, carry, w_BxTxH):
        y_BxTxH, final = scan_driver(cell.step, p, cell.project(p, x_BxTxD), carry)
        return jnp.sum(w_BxTxH * y_BxTxH) + sum(jnp.sum(v) for v in jax.tree.leaves(final))

    def grad_and_jvp(p, tangent, x_BxTxD, carry, w_BxTxH):
        f = functools.partial(loss, x_BxTxD=x_BxTxD, carry=carry, w_BxTxH=w_BxTxH)
        return jax.grad(f)(p), jax.jvp(f, (p,), (tangent,))[1]

    return jax.jit(grad_and_jvp)


def check_transforms(cell: Cell, input_size: int, *, seed: int = 0) -> None:
    """``jit``, ``vmap`` and ``grad`` work and agree with the untransformed functions."""
    name = _rule(cell, "transforms")
    params, x_BxTxD, carry = _setup(cell, input_size, seed)
    xp_BxTxG = cell.project(params, x_BxTxD)
    eager = cell.step(params, carry, xp_BxTxG[:, 0])
    _assert_trees_close(jax.jit(cell.project)(params, x_BxTxD), xp_BxTxG,
                        f"{name}: jit(project)")
    _assert_trees_close(_project_step(cell)(params, carry, x_BxTxD), eager,
                        f"{name}: jit(step)")

    # Other draws of the same shapes (the compiled set-up is reused).
    others = [_setup(cell, input_size, seed + 1 + n) for n in range(3)]
    N = 2

    # vmap over a batch of batches: [N, B, ...] carries and inputs, shared params.
    carries = _stack([c for _, _, c in others[:N]])
    xps = _stack([np.asarray(xp_BxTxG)[:, 1 + n] for n in range(N)])
    batched = jax.jit(jax.vmap(cell.step, in_axes=(None, 0, 0)))(params, carries, xps)
    for n in range(N):
        _assert_trees_close(_member(batched, n),
                            cell.step(params, _member(carries, n), xps[n]),
                            f"{name}: vmap(step) over inputs, slice {n}")

    # vmap over stacked params (an ensemble of cells), through project and step.
    stacked = _stack([p for p, _, _ in others[:N]])
    batched = jax.jit(jax.vmap(_project_step(cell), in_axes=(0, None, None)))(
        stacked, carry, x_BxTxD)
    for n in range(N):
        p_n = _member(stacked, n)
        want = cell.step(p_n, carry, cell.project(p_n, x_BxTxD)[:, 0])
        _assert_trees_close(_member(batched, n), want,
                            f"{name}: vmap over stacked params, member {n}")

    # grad of a loss over a whole sequence: finite, reaches every leaf, agrees with jvp.
    tangent, w_BxTxD, _ = others[2]
    w_BxTxH = np.resize(np.asarray(w_BxTxD), (*x_BxTxD.shape[:2], cell.hidden_size))
    grads, forward = _loss_grad_jvp(cell)(params, tangent, x_BxTxD, carry, w_BxTxH)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        where = jax.tree_util.keystr(path)
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), f"{name}: non-finite gradient for param {where}"
        assert np.any(g != 0), f"{name}: param {where} gets no gradient; is it used by step?"
    reverse = sum(np.sum(np.asarray(g, np.float64) * np.asarray(t, np.float64))
                  for g, t in zip(jax.tree.leaves(grads), jax.tree.leaves(tangent), strict=True))
    np.testing.assert_allclose(float(reverse), float(forward), rtol=1e-4, atol=1e-4,
                               err_msg=f"{name}: grad·v (reverse mode) != jvp (forward mode)")


@_cache_by_cell
def _driver(cell: Cell, *, reverse: bool, unroll: int, use_jit: bool):
    """``scan_driver`` bound to ``cell.step`` and options, jitted once and shared."""
    run = functools.partial(scan_driver, cell.step, reverse=reverse, unroll=unroll)
    return jax.jit(run) if use_jit else run


def _hand_loop(cell: Cell, params, xp_BxTxG, carry, reverse: bool):
    """``cell.step`` in a plain loop, no driver: the unpadded reference of the masking check."""
    T = xp_BxTxG.shape[1]
    ys = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        carry, ys[t] = cell.step(params, carry, xp_BxTxG[:, t])
    return np.stack([np.asarray(y) for y in ys], axis=1), carry


def check_drivers(cell: Cell, input_size: int, *, seed: int = 0) -> None:
    """``scan_driver`` equals ``loop_driver``, forward and reverse: eager and jitted, unroll 1
    and 3, without sequence lengths and with them (one of them 0)."""
    name = _rule(cell, "driver")
    params, x_BxTxD, carry = _setup(cell, input_size, seed)
    T = x_BxTxD.shape[1]
    xp_BxTxG = cell.project(params, x_BxTxD)
    lengths_B = jnp.array([T, T - 3, 0], jnp.int32)[:BATCH]
    # (jit, unroll) pairs: both unrolls, eager and jitted, with lengths; plain jit without
    combos = {None: ((True, 1),), "lengths": ((False, 1), (True, 3))}
    for lengths, pairs in combos.items():
        seq_lengths = None if lengths is None else lengths_B
        for reverse in (False, True):
            want = loop_driver(cell.step, params, xp_BxTxG, carry, seq_lengths, reverse=reverse)
            for use_jit, unroll in pairs:
                run = _driver(cell, reverse=reverse, unroll=unroll, use_jit=use_jit)
                got = run(params, xp_BxTxG, carry, seq_lengths)
                _assert_trees_close(
                    got, want, f"{name}: scan_driver(reverse={reverse}, jit={use_jit}, "
                               f"unroll={unroll}, seq_lengths={seq_lengths}) != loop_driver")
            if seq_lengths is not None:
                # a length-0 sequence: no step runs, the final carry is the initial one
                _assert_trees_close(jax.tree.map(lambda v: v[2], want[1]),
                                    jax.tree.map(lambda v: v[2], carry),
                                    f"{name}: final carry of a length-0 sequence (reverse="
                                    f"{reverse}) != initial carry", rtol=0, atol=0)


def check_masking(cell: Cell, input_size: int, *, seed: int = 0) -> None:
    """A padded batch with ``seq_lengths`` equals the sequences run one by one, unpadded."""
    name = _rule(cell, "masking")
    params, x_BxTxD, carry = _setup(cell, input_size, seed)
    T = x_BxTxD.shape[1]
    lengths = [T, T - 3, 1][:BATCH]
    lengths_B = jnp.array(lengths, jnp.int32)
    xp_BxTxG = cell.project(params, x_BxTxD)  # padding holds random inputs on purpose
    # the unpadded references slice host copies (eager slicing would compile per index)
    xp_np, carry_np = np.asarray(xp_BxTxG), jax.tree.map(np.asarray, carry)
    for reverse in (False, True):
        run = _driver(cell, reverse=reverse, unroll=3, use_jit=True)
        y_BxTxH, final = jax.tree.map(np.asarray, run(params, xp_BxTxG, carry, lengths_B))
        for b, L in enumerate(lengths):
            one_carry = jax.tree.map(lambda v, b=b: v[b:b + 1], carry_np)
            y_1xLxH, one_final = _hand_loop(cell, params, xp_np[b:b + 1, :L], one_carry,
                                            reverse)
            what = f"{name}, reverse={reverse}, example {b} (length {L} of {T})"
            np.testing.assert_allclose(y_BxTxH[b, :L], y_1xLxH[0], rtol=RTOL, atol=ATOL,
                                       err_msg=f"{what}: padded outputs != unpadded outputs")
            np.testing.assert_array_equal(y_BxTxH[b, L:], np.zeros((T - L, cell.hidden_size)),
                                          err_msg=f"{what}: padded steps must emit zeros")
            _assert_trees_close(jax.tree.map(lambda v, b=b: v[b:b + 1], final), one_final,
                                f"{what}: padded final carry != unpadded final carry")


@_cache_by_cell
def _fused_and_autodiff(cell: Cell, *, reverse: bool, remat: bool):
    """``jit`` of the gradients of one loss through both backward passes."""
    def loss(driver, p, xp_BxTxG, carry, probe, lengths_B, w_BxTxH):
        y_BxTxH, final = driver(p, xp_BxTxG, carry, lengths_B, reverse=reverse, remat=remat,
                                probe=probe)
        return jnp.sum(w_BxTxH * jnp.tanh(y_BxTxH)) + sum(
            jnp.sum(v * v) for v in jax.tree.leaves(final))

    fused = functools.partial(fused_scan_driver, cell)
    autodiff = functools.partial(scan_driver, cell.step, probed_step=cell.probed_step)
    grads = [jax.grad(functools.partial(loss, d), argnums=(0, 1, 2, 3))
             for d in (fused, autodiff)]
    return jax.jit(lambda *args: (grads[0](*args), grads[1](*args)))


def check_fused(cell: Cell, input_size: int, *, seed: int = 0) -> None:
    """For a cell with :meth:`~rnnlab.cells.base.Cell.update`: ``step`` is ``update`` after the
    recurrent product, and fused BPTT's gradients equal autodiff's (see the module
    docstring). Does nothing for a cell without ``update``."""
    if not cell.fusable:
        return
    name = _rule(cell, "fused")
    params, x_BxTxD, carry = _setup(cell, input_size, seed)
    xp_BxTxG = cell.project(params, x_BxTxD)
    hr_BxG = _call(cell, "fused", "recurrent_product", cell.recurrent_product, params, carry,
                   xp_BxTxG[:, 0])
    got = _call(cell, "fused", "update", cell.update, params, carry, xp_BxTxG[:, 0], hr_BxG)
    _assert_trees_close(got, cell.step(params, carry, xp_BxTxG[:, 0]),
                        f"{name}: update(params, carry, xp, carry.h @ U) != step")
    rng = np.random.default_rng(seed + 1)
    T = x_BxTxD.shape[1]
    lengths_B = jnp.array([T, T - 2, 0][:BATCH], jnp.int32)
    w_BxTxH = jnp.asarray(rng.standard_normal((BATCH, T, cell.hidden_size)), xp_BxTxG.dtype)
    probe = jax.tree.map(lambda z: jnp.zeros((T, *z.shape), z.dtype), carry)
    for reverse, remat in ((False, False), (True, True)):
        fused, autodiff = _call(
            cell, "fused", "fused_scan_driver",
            _fused_and_autodiff(cell, reverse=reverse, remat=remat), params, xp_BxTxG, carry,
            probe, lengths_B, w_BxTxH)
        _assert_trees_close(fused, autodiff,
                            f"{name}, reverse={reverse}, remat={remat}: fused gradients "
                            f"(params, xp, initial carry, probe) != autodiff's",
                            rtol=1e-4, atol=1e-5)


def check_numpy_reference(cell: Cell, input_size: int, numpy_step: NumpyStep, *,
                          seed: int = 0, tol: float = REFERENCE_TOL) -> None:
    """The cell (``project`` + scan driver, in its own dtype) matches a float64 NumPy step
    over a sequence, outputs and final carry.

    ``numpy_step(params, carry, x_BxD) -> (carry, h_BxH)`` gets the params as float64 NumPy
    arrays in the cell's documented layout, the carry as ``cell.carry_type`` of float64
    arrays and the raw input of one step (not the projection: the reference transcribes the
    whole equation)."""
    name = _rule(cell, "reference")
    params, x_BxTxD, carry = _setup(cell, input_size, seed)
    run = _driver(cell, reverse=False, unroll=1, use_jit=True)
    y_BxTxH, final = run(params, cell.project(params, x_BxTxD), carry, None)
    p64, x64, c64 = to_numpy64(params), np.asarray(x_BxTxD, np.float64), to_numpy64(carry)
    ys = []
    for t in range(x64.shape[1]):
        c64, h = numpy_step(p64, c64, x64[:, t])
        ys.append(np.asarray(h, np.float64))
    np.testing.assert_allclose(np.asarray(y_BxTxH, np.float64), np.stack(ys, axis=1),
                               rtol=tol, atol=tol,
                               err_msg=f"{name}: outputs differ from the NumPy reference")
    _assert_trees_close(final, type(carry)(*c64),
                        f"{name}: final carry differs from the NumPy reference", rtol=tol,
                        atol=tol)


def check_cell(cell: Cell, input_size: int, numpy_step: NumpyStep | None = None, *,
               seed: int = 0) -> None:
    """Runs every check of this module on ``cell`` (see the module docstring); raises
    ``AssertionError`` naming the cell and the failed property."""
    if not isinstance(cell, Cell):
        raise TypeError(f"check_cell expects a rnnlab Cell; got {type(cell).__name__}")
    check_init(cell, input_size, seed=seed)
    check_shapes(cell, input_size, seed=seed)
    check_transforms(cell, input_size, seed=seed)
    check_drivers(cell, input_size, seed=seed)
    check_masking(cell, input_size, seed=seed)
    check_fused(cell, input_size, seed=seed)
    if numpy_step is not None:
        check_numpy_reference(cell, input_size, numpy_step, seed=seed)
