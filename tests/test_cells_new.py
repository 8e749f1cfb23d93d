"""The comparison cells: MGU, IndRNN, minGRU, minLSTM (and CIFG in test_cells_variants.py):
float64 NumPy references, the shared suite, parameter counts, IndRNN's constraint, and the
parallel (associative-scan) mode of minGRU/minLSTM against their sequential mode."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.cells import MGU, HiddenCarry, IndRNN, MinGRU, MinLSTM, make_cell
from rnnlab.cells.minrnn import linear_recurrence
from rnnlab.config import compose
from rnnlab.recurrent import scan_driver
from rnnlab.testing import check_numpy_reference, perturb_params, random_carry

INPUT_SIZE = 3
HIDDEN = 4


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def split(a, n):
    H = a.shape[-1] // n
    return [a[..., k * H:(k + 1) * H] for k in range(n)]


def mgu_reference(p, carry, x):
    """Zhou et al. 2016, eq. 5-7."""
    (h,) = carry
    Wf, Wh = split(p["kernel"], 2)
    Uf, Uh = split(p["recurrent_kernel"], 2)
    bf, bh = split(p["bias"], 2)
    f = sigmoid(x @ Wf + h @ Uf + bf)
    h_tilde = np.tanh(x @ Wh + (f * h) @ Uh + bh)
    h_new = (1 - f) * h + f * h_tilde
    return HiddenCarry(h_new), h_new


def indrnn_reference(u_max=None):
    """Li et al. 2018, eq. 2, with |u| clipped to u_max."""
    def step(p, carry, x):
        (h,) = carry
        u = p["recurrent_weight"] if u_max is None else np.clip(p["recurrent_weight"], -u_max,
                                                                u_max)
        h_new = np.maximum(x @ p["kernel"] + u * h + p["bias"], 0.0)
        return HiddenCarry(h_new), h_new

    return step


def mingru_reference(p, carry, x):
    """Feng et al. 2024, Section 3.1.3 (minGRU)."""
    (h,) = carry
    Wz, Wh = split(p["kernel"], 2)
    bz, bh = split(p["bias"], 2)
    z = sigmoid(x @ Wz + bz)
    h_new = (1 - z) * h + z * (x @ Wh + bh)
    return HiddenCarry(h_new), h_new


def minlstm_reference(p, carry, x):
    """Feng et al. 2024, Section 3.2.3 (minLSTM, normalised gates)."""
    (h,) = carry
    Wf, Wi, Wh = split(p["kernel"], 3)
    bf, bi, bh = split(p["bias"], 3)
    f, i = sigmoid(x @ Wf + bf), sigmoid(x @ Wi + bi)
    h_new = f / (f + i) * h + i / (f + i) * (x @ Wh + bh)
    return HiddenCarry(h_new), h_new


REFERENCES = {"mgu": mgu_reference, "indrnn": indrnn_reference(), "mingru": mingru_reference,
              "minlstm": minlstm_reference}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_numpy_reference(name):
    # (the whole shared suite runs on every registered cell in test_cells.py)
    check_numpy_reference(make_cell(name, hidden_size=HIDDEN), INPUT_SIZE, REFERENCES[name])


def test_indrnn_constraint_clips_the_recurrent_weight():
    # with a bound of 0.5 the reference clips u too; one with an unclipped u must differ
    cell = IndRNN(HIDDEN, recurrent_max=0.5)
    check_numpy_reference(cell, INPUT_SIZE, indrnn_reference(0.5), seed=3)
    with pytest.raises(AssertionError, match="NumPy reference"):
        check_numpy_reference(cell, INPUT_SIZE, indrnn_reference(None), seed=3)
    u = np.asarray(cell.init(jax.random.key(0), 2)["recurrent_weight"])
    assert u.shape == (HIDDEN,) and u.min() >= 0.0 and u.max() <= 0.5
    # the paper's bound for T = 100: |u|^T <= 2
    T = 100
    assert (2 ** (1 / T)) ** T == pytest.approx(2.0)


def test_indrnn_bad_bound():
    with pytest.raises(ValueError, match=r"cell\.recurrent_max must be a positive number or "
                                         r"null; got -1"):
        IndRNN(4, recurrent_max=-1)


@pytest.mark.parametrize(("cell", "expected"), [
    (MGU(10), 2 * (10 * 3 + 100 + 10)),  # 280
    (IndRNN(10), 10 * 3 + 20),  # 50
    (MinGRU(10), 2 * (10 * 3 + 10)),  # 80
    (MinLSTM(10), 3 * (10 * 3 + 10)),  # 120
])
def test_param_counts_by_hand(cell, expected):
    shapes = jax.eval_shape(lambda k: cell.init(k, 3), jax.random.key(0))
    assert cell.param_count(3) == expected
    assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == expected


@pytest.mark.parametrize("name", ["mgu", "indrnn", "mingru", "minlstm", "cifg"])
def test_each_cell_composes_from_its_yaml(name):
    cfg = compose([f"cell={name}", "cell.hidden_size=8"])
    assert cfg.cell.name == name and cfg.cell.hidden_size == 8


# ---- minGRU / minLSTM: the parallel mode equals the sequential mode ---------------------------
def test_linear_recurrence_against_a_loop():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, (2, 7, 3)), rng.standard_normal((2, 7, 3))
    h0 = rng.standard_normal((2, 3))
    for reverse in (False, True):
        h, want = h0.copy(), np.zeros_like(b)
        for t in (range(6, -1, -1) if reverse else range(7)):
            h = a[:, t] * h + b[:, t]
            want[:, t] = h
        got = linear_recurrence(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32),
                                jnp.asarray(h0, jnp.float32), reverse=reverse)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def _setup(cell, T, seed=0, B=3):
    rng = np.random.default_rng(seed)
    params = perturb_params(cell.init(jax.random.key(seed), INPUT_SIZE), rng)
    x = jnp.asarray(rng.standard_normal((B, T, INPUT_SIZE)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((B, T, cell.hidden_size)), jnp.float32)
    return params, x, random_carry(cell, B, rng), w


@functools.lru_cache
def _losses(cell):
    """(sequential, parallel) losses of (params, carry, probe) over a sequence, jitted."""
    def make(parallel):
        def loss(params, carry, probe, x, w, lengths, reverse, nan_pad=None):
            xp = cell.project(params, x)
            if nan_pad is not None:  # padded steps of the projection hold NaN
                xp = jnp.where(nan_pad[:, :, None], jnp.nan, xp)
            if parallel:
                y, final = cell.scan_parallel(params, xp, carry, lengths, reverse=reverse,
                                              probe=probe)
            else:
                y, final = scan_driver(cell.step, params, xp, carry, lengths, reverse=reverse,
                                       probe=probe)
            return jnp.sum(w * y) + jnp.sum(final.h ** 2), (y, final)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True),
                       static_argnums=6)

    return make(False), make(True)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, (7, 4, 0)])
def test_parallel_mode_equals_sequential_mode(cls, reverse, lengths):
    # outputs, final carries, and gradients w.r.t. params, initial carry and the gradient
    # probe (dL/dh_t), with the projection's padded steps holding NaN where lengths are given
    cell = cls(HIDDEN)
    T = 7
    params, x, carry, w = _setup(cell, T)
    seq_lengths = pad = None
    if lengths is not None:
        seq_lengths = jnp.asarray(lengths, jnp.int32)
        pad = jnp.asarray(np.arange(T)[None, :] >= np.asarray(lengths)[:, None])
    probe = HiddenCarry(jnp.zeros((T, 3, HIDDEN), jnp.float32))
    sequential, parallel = _losses(cell)
    (l_s, (y_s, f_s)), g_s = sequential(params, carry, probe, x, w, seq_lengths, reverse, pad)
    (l_p, (y_p, f_p)), g_p = parallel(params, carry, probe, x, w, seq_lengths, reverse, pad)
    np.testing.assert_allclose(float(l_p), float(l_s), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(y_p), np.asarray(y_s), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(f_p.h), np.asarray(f_s.h), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(g_s), strict=True):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    if lengths is not None:  # a length-0 sequence keeps its initial carry
        np.testing.assert_array_equal(np.asarray(f_p.h[2]), np.asarray(carry.h[2]))


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_parallel_mode_on_a_long_sequence(cls):
    # T = 1,000: the two modes still agree to 1e-5 (no drift from the products of a_t)
    cell = cls(HIDDEN)
    T = 1000
    params, x, carry, w = _setup(cell, T, seed=1, B=2)
    probe = HiddenCarry(jnp.zeros((T, 2, HIDDEN), jnp.float32))
    sequential, parallel = _losses(cell)
    (_, (y_s, _)), g_s = sequential(params, carry, probe, x, w, None, False)
    (_, (y_p, _)), g_p = parallel(params, carry, probe, x, w, None, False)
    np.testing.assert_allclose(np.asarray(y_p), np.asarray(y_s), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(g_s), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
