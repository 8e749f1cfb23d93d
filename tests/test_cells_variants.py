"""The LSTM variant space of Greff et al. (2017): each variant against a float64 NumPy
transcription of the paper's equations with the same switch, the shared suite, parameter
counts from the paper's equations, initial biases, and the gradient probe's placement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.cells import CIFG, LSTM, FGRCarry, LSTMCarry, PeepholeLSTM, make_cell
from rnnlab.cells.lstm import VARIANTS
from rnnlab.testing import check_cell, check_numpy_reference

INPUT_SIZE = 3
HIDDEN = 4


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def greff_reference(variant: str, peepholes: bool):
    """Greff et al. 2017, Section II (vanilla LSTM, peepholes optional) and Section III (the
    variants), transcribed gate by gate. Params in rnnlab's layout: the kept gate blocks in
    the order i, f, g, o; peephole rows for the kept gates among i, f, o."""
    kept = {"nig": "fgo", "nfg": "igo", "nog": "ifg", "cifg": "igo"}.get(variant, "ifgo")
    peep_rows = [g for g in "ifo" if g in kept] if peepholes else []

    def step(p, carry, x):
        h, c = carry.h, carry.c
        H = h.shape[-1]
        W = {g: p["kernel"][:, k * H:(k + 1) * H] for k, g in enumerate(kept)}
        R = {g: p["recurrent_kernel"][:, k * H:(k + 1) * H] for k, g in enumerate(kept)}
        b = {g: p["bias"][k * H:(k + 1) * H] for k, g in enumerate(kept)}
        P = {g: p["peephole"][k] for k, g in enumerate(peep_rows)}
        P0 = {g: P.get(g, np.zeros(H)) for g in "ifo"}

        def pre(g):
            out = x @ W[g] + h @ R[g] + b[g]
            if variant == "fgr" and g != "g":  # gates: + R_{i->g} i' + R_{f->g} f' + R_{o->g} o'
                col = "ifo".index(g)
                Rg = p["gate_recurrent_kernel"][:, col * H:(col + 1) * H]
                out = out + carry.i @ Rg[:H] + carry.f @ Rg[H:2 * H] + carry.o @ Rg[2 * H:]
            return out

        z = pre("g") if variant == "niaf" else np.tanh(pre("g"))  # block input
        i = 1.0 if variant == "nig" else sigmoid(pre("i") + P0["i"] * c)
        if variant == "nfg":
            f = 1.0
        elif variant == "cifg":
            f = 1.0 - i
        else:
            f = sigmoid(pre("f") + P0["f"] * c)
        c_new = z * i + c * f
        o = 1.0 if variant == "nog" else sigmoid(pre("o") + P0["o"] * c_new)
        y = (c_new if variant == "noaf" else np.tanh(c_new)) * o
        if variant == "fgr":
            return FGRCarry(y, c_new, i, f, o), y
        return LSTMCarry(y, c_new), y

    return step


@pytest.mark.parametrize("peepholes", [False, True], ids=["np", "peephole"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_greff_equations(variant, peepholes):
    cls = PeepholeLSTM if peepholes else LSTM
    check_numpy_reference(cls(HIDDEN, variant=variant), INPUT_SIZE,
                          greff_reference(variant, peepholes), seed=2)


@pytest.mark.parametrize("variant", ["nig", "cifg", "fgr"])
def test_shared_suite_on_variants(variant):
    check_cell(PeepholeLSTM(HIDDEN, variant=variant), INPUT_SIZE,
               greff_reference(variant, peepholes=True))


def test_cifg_cell_is_the_cifg_variant():
    # (the shared suite runs on every registered cell in test_cells.py)
    check_numpy_reference(make_cell("cifg", hidden_size=HIDDEN), INPUT_SIZE,
                          greff_reference("cifg", peepholes=False))
    with pytest.raises(ValueError, match=r"cell\.variant must be 'cifg' for the cifg cell"):
        CIFG(HIDDEN, variant="nig")


@pytest.mark.parametrize("variant", ["niaf", "noaf"])
def test_each_switch_changes_its_equation(variant):
    # the variants with the vanilla layout must fail the vanilla reference (a switch that
    # changed nothing would pass); the others differ in layout (see the parameter counts)
    with pytest.raises(AssertionError, match="NumPy reference"):
        check_numpy_reference(PeepholeLSTM(HIDDEN, variant=variant), INPUT_SIZE,
                              greff_reference("vanilla", peepholes=True), seed=2)


# Counts from Greff et al.'s equations, by hand for H = 10, D = 1 (block: H·D + H² + H = 120):
# the vanilla LSTM (with peepholes) has 4 blocks + 3H peepholes; NIG/NFG/NOG/CIFG drop one
# block and its peephole; NIAF/NOAF change no parameter; FGR adds nine H×H matrices; NP drops
# the peepholes.
GREFF_COUNTS = {"vanilla": 510, "nig": 380, "nfg": 380, "nog": 380, "niaf": 510, "noaf": 510,
                "cifg": 380, "fgr": 1410}


@pytest.mark.parametrize("variant", VARIANTS)
def test_param_counts_from_the_paper(variant):
    peep = PeepholeLSTM(10, variant=variant)
    no_peep = LSTM(10, variant=variant)
    peepholes = 10 * (2 if len(peep.gates) == 3 else 3)
    assert peep.param_count(1) == GREFF_COUNTS[variant]
    assert no_peep.param_count(1) == GREFF_COUNTS[variant] - peepholes
    for cell in (peep, no_peep):
        shapes = jax.eval_shape(lambda k, cell=cell: cell.init(k, 1), jax.random.key(0))
        assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == \
            cell.param_count(1)


def test_np_is_the_plain_lstm():
    assert PeepholeLSTM(10).param_count(1) - LSTM(10).param_count(1) == 30


@pytest.mark.parametrize(("variant", "forget_slice", "value"), [
    ("vanilla", slice(4, 8), 2.0), ("nig", slice(0, 4), 2.0), ("nog", slice(4, 8), 2.0),
    ("cifg", slice(0, 4), -2.0)])
def test_forget_bias_setting(variant, forget_slice, value):
    bias = np.asarray(LSTM(4, variant=variant, forget_bias=2.0).init(jax.random.key(0), 2)["bias"])
    expected = np.zeros_like(bias)
    expected[forget_slice] = value
    np.testing.assert_array_equal(bias, expected)
    if variant == "cifg":  # f = 1 - sigmoid(b_i) starts at sigmoid(forget_bias)
        np.testing.assert_allclose(1 - sigmoid(bias[:4]), sigmoid(2.0))


def test_nfg_bias_has_no_forget_slice():
    bias = np.asarray(LSTM(4, variant="nfg", forget_bias=2.0).init(jax.random.key(0), 2)["bias"])
    np.testing.assert_array_equal(bias, np.zeros(12))


def test_unknown_variant_is_refused_by_field():
    with pytest.raises(ValueError, match=r"cell.variant='nxg' is not an LSTM variant; accepted: "
                                         r"\['vanilla', 'nig'"):
        LSTM(4, variant="nxg")


@pytest.mark.parametrize("cls", [LSTM, PeepholeLSTM])
@pytest.mark.parametrize("variant", ["vanilla", "noaf", "fgr"])
def test_probe_on_c_acts_before_h_reads_it(cls, variant):
    # dL/d(probe_c) must be the total derivative dL/dc_t, including the path through
    # h_t = o_t phi(c_t) and o's peephole. L = sum(w h_t) + sum(c_t); by hand, with
    # o = sigmoid(z_o + p_o c): dL/dc = w (o (1 - tanh(c)^2) + o (1 - o) p_o tanh(c)) + 1
    # (noaf: tanh(c) -> c). A probe added after h_t read c_t would give just 1.
    cell = cls(HIDDEN, variant=variant)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: p + 0.3 * jnp.asarray(rng.standard_normal(p.shape),
                                                          p.dtype),
                          cell.init(jax.random.key(0), INPUT_SIZE))
    carry = jax.tree.map(lambda z: jnp.asarray(0.5 * rng.standard_normal(z.shape), z.dtype),
                         cell.initial_carry(None, 2))
    xp = jnp.asarray(rng.standard_normal((2, cell.gate_size)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((2, HIDDEN)), jnp.float32)

    def loss_of_probe(eps):
        probe = jax.tree.map(jnp.zeros_like, carry)._replace(c=eps)
        new, h = cell.probed_step(params, carry, xp, probe)
        return jnp.sum(w * h) + jnp.sum(new.c)

    g_probe = np.asarray(jax.grad(loss_of_probe)(jnp.zeros((2, HIDDEN), jnp.float32)))

    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    H = HIDDEN
    z_o = np.asarray(xp, np.float64)[:, 3 * H:] + np.asarray(carry.h, np.float64) @ \
        p["recurrent_kernel"][:, 3 * H:]
    if variant == "fgr":
        prev = np.concatenate([np.asarray(carry.i), np.asarray(carry.f), np.asarray(carry.o)],
                              axis=-1).astype(np.float64)
        z_o = z_o + prev @ p["gate_recurrent_kernel"][:, 2 * H:]
    c = np.asarray(cell.step(params, carry, xp)[0].c, np.float64)
    p_o = p["peephole"][2] if cls is PeepholeLSTM else np.zeros(H)
    o = sigmoid(z_o + p_o * c)
    phi, dphi = (c, 1.0) if variant == "noaf" else (np.tanh(c), 1 - np.tanh(c) ** 2)
    expected = np.asarray(w, np.float64) * (o * dphi + o * (1 - o) * p_o * phi) + 1.0
    np.testing.assert_allclose(g_probe, expected, rtol=1e-5, atol=1e-6)
