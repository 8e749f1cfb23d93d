"""Cells: float64 NumPy references, the shared suite on every registered cell, parameter
counts, initial biases and error messages."""

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.cells import (
    CELLS,
    GRU,
    LSTM,
    HiddenCarry,
    LSTMCarry,
    PeepholeLSTM,
    SimpleRNN,
    make_cell,
)
from rnnlab.models import SequenceModel, count_params
from rnnlab.testing import check_cell, check_init, check_numpy_reference, check_shapes

INPUT_SIZE = 3
HIDDEN = 4


# ---- float64 NumPy transcriptions of the equations (DESIGN.md, "Cell equations") -----------
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def relu(z):
    return np.maximum(z, 0.0)


def blocks(a, n):
    """The ``n`` gate blocks of a fused ``[..., n*H]`` array, in the documented gate order."""
    H = a.shape[-1] // n
    return [a[..., k * H:(k + 1) * H] for k in range(n)]


def lstm_reference(phi=np.tanh, peephole=False, output_peeks_at_old_c=False):
    """LSTM, gate order i, f, g, o; with ``peephole``: i, f see c_{t-1}, o sees c_t (or, as a
    deliberate slip for the negative test, c_{t-1})."""
    def step(p, carry, x):
        h, c = carry
        Wi, Wf, Wg, Wo = blocks(p["kernel"], 4)
        Ui, Uf, Ug, Uo = blocks(p["recurrent_kernel"], 4)
        bi, bf, bg, bo = blocks(p["bias"], 4)
        zi = x @ Wi + h @ Ui + bi
        zf = x @ Wf + h @ Uf + bf
        zg = x @ Wg + h @ Ug + bg
        zo = x @ Wo + h @ Uo + bo
        if peephole:
            pi, pf, po = p["peephole"]
            zi = zi + pi * c
            zf = zf + pf * c
        c_new = sigmoid(zf) * c + sigmoid(zi) * phi(zg)
        if peephole:
            zo = zo + po * (c if output_peeks_at_old_c else c_new)
        h_new = sigmoid(zo) * phi(c_new)
        return LSTMCarry(h_new, c_new), h_new

    return step


def gru_reference(reset_after=True):
    """GRU, gate order r, z, n; PyTorch's reset-after form or Cho et al.'s reset-before."""
    def step(p, carry, x):
        (h,) = carry
        Wr, Wz, Wn = blocks(p["kernel"], 3)
        Ur, Uz, Un = blocks(p["recurrent_kernel"], 3)
        b_ir, b_iz, b_in = blocks(p["bias"], 3)
        if reset_after:
            b_hr, b_hz, b_hn = blocks(p["recurrent_bias"], 3)
        else:
            b_hr = b_hz = b_hn = 0.0
        r = sigmoid(x @ Wr + b_ir + h @ Ur + b_hr)
        z = sigmoid(x @ Wz + b_iz + h @ Uz + b_hz)
        if reset_after:
            n = np.tanh(x @ Wn + b_in + r * (h @ Un + b_hn))
        else:
            n = np.tanh(x @ Wn + b_in + (r * h) @ Un)
        h_new = (1.0 - z) * n + z * h
        return HiddenCarry(h_new), h_new

    return step


def rnn_reference(phi=np.tanh):
    def step(p, carry, x):
        (h,) = carry
        h_new = phi(x @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"])
        return HiddenCarry(h_new), h_new

    return step


# name -> the reference of the registered cell with default options
DEFAULT_REFERENCES = {
    "lstm": lstm_reference(),
    "peephole": lstm_reference(peephole=True),
    "gru": gru_reference(reset_after=True),
    "rnn": rnn_reference(),
}

# the non-default forms (the defaults are checked against DEFAULT_REFERENCES in the suite)
VARIANTS = [
    pytest.param(LSTM(HIDDEN, activation="relu"), lstm_reference(phi=relu), id="lstm-relu"),
    pytest.param(PeepholeLSTM(HIDDEN, activation="relu", forget_bias=0.0),
                 lstm_reference(phi=relu, peephole=True), id="peephole-relu"),
    pytest.param(GRU(HIDDEN, reset_after=False), gru_reference(reset_after=False),
                 id="gru-reset-before"),
    pytest.param(SimpleRNN(HIDDEN, activation="relu"), rnn_reference(phi=relu), id="rnn-relu"),
]


@pytest.mark.parametrize(("cell", "reference"), VARIANTS)
def test_cell_variant_matches_numpy_reference(cell, reference):
    # float32 cell (project + scan driver) vs the float64 transcription over a sequence, on
    # perturbed params (nonzero biases and peepholes), random inputs and a random initial carry
    check_numpy_reference(cell, INPUT_SIZE, reference, seed=1)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_shared_suite_on_every_registered_cell(name):
    # includes the float64 NumPy reference of each registered cell's default form
    check_cell(make_cell(name, hidden_size=HIDDEN), INPUT_SIZE, DEFAULT_REFERENCES.get(name))


# ---- the suite has teeth: it fails on broken cells ---------------------------------------------
def test_reference_check_rejects_the_other_gru_form():
    with pytest.raises(AssertionError, match="NumPy reference"):
        check_numpy_reference(GRU(HIDDEN), INPUT_SIZE, gru_reference(reset_after=False))


def test_reference_check_rejects_peephole_output_gate_seeing_the_old_cell_state():
    with pytest.raises(AssertionError, match="NumPy reference"):
        check_numpy_reference(PeepholeLSTM(HIDDEN), INPUT_SIZE,
                              lstm_reference(peephole=True, output_peeks_at_old_c=True))


@dataclasses.dataclass(frozen=True)
class _MiscountedRNN(SimpleRNN):
    def param_count(self, input_size):
        return super().param_count(input_size) + 1


@dataclasses.dataclass(frozen=True)
class _OutputIsNotCarry(SimpleRNN):
    def step(self, params, carry, xp_BxG):
        carry, h_BxH = super().step(params, carry, xp_BxG)
        return carry, 2.0 * h_BxH


def test_suite_rejects_a_wrong_param_count_formula():
    with pytest.raises(AssertionError, match=r"param_count\(3\) = 33 but init\(3\) has 32"):
        check_init(_MiscountedRNN(hidden_size=4), 3)


def test_suite_rejects_a_step_whose_output_is_not_the_carry():
    with pytest.raises(AssertionError, match="output differs from the new carry's h"):
        check_shapes(_OutputIsNotCarry(hidden_size=4), 3)


# ---- parameter counts: Keras' formulas, numbers computed by hand ------------------------------
def tree_size(cell, input_size):
    shapes = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))
    return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))


@pytest.mark.parametrize(("cell", "input_size", "expected"), [
    (LSTM(10), 1, 480),  # 4(10·1 + 10² + 10): Keras' LSTM(10) on one feature (the seeds)
    (LSTM(50), 1, 10_400),  # 4(50 + 2500 + 50)
    (LSTM(50), 50, 20_200),  # 4(2500 + 2500 + 50)
    (PeepholeLSTM(10), 1, 510),  # 480 + 3·10
    (GRU(10), 1, 390),  # 3·10(1 + 10 + 2): Keras GRU(reset_after=True)
    (GRU(10, reset_after=False), 1, 360),  # 3·10(1 + 10 + 1)
    (SimpleRNN(10), 1, 120),  # 10 + 100 + 10
    (SimpleRNN(4), 2, 28),  # 8 + 16 + 4
])
def test_param_count_hand_computed(cell, input_size, expected):
    assert cell.param_count(input_size) == expected
    assert tree_size(cell, input_size) == expected


@pytest.mark.parametrize(("U", "I"), [(1, 1), (3, 7), (16, 2)])
def test_param_count_keras_formulas(U, I):
    formulas = {
        LSTM(U): 4 * (U * I + U * U + U),
        PeepholeLSTM(U): 4 * (U * I + U * U + U) + 3 * U,
        GRU(U): 3 * U * (I + U + 2),
        SimpleRNN(U): U * I + U * U + U,
    }
    for cell, expected in formulas.items():
        assert (cell.param_count(I), tree_size(cell, I)) == (expected, expected), cell


def test_stock_forecaster_has_the_keras_param_count():
    # the seeds' stock model: LSTM(50, return_sequences) x3, LSTM(50), Dropout(0.2) after each,
    # Dense(1), on one feature; Keras' summary reports 71,051 trainable parameters
    # (10,400 + 3·20,200 + 51).
    model = SequenceModel(cells=(LSTM(50),) * 4, output_size=1, readout="last", dropout=0.2)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 5, 1), jnp.float32))
    assert count_params(shapes["params"]) == 71_051


# ---- initial biases ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [LSTM, PeepholeLSTM])
@pytest.mark.parametrize("forget_bias", [1.0, 2.5])
def test_forget_bias_sits_in_the_second_gate_block(cls, forget_bias):
    H = 3
    kwargs = {} if forget_bias == 1.0 else {"forget_bias": forget_bias}  # 1.0 is the default
    bias = np.asarray(cls(hidden_size=H, **kwargs).init(jax.random.key(0), 2)["bias"])
    expected = np.zeros(4 * H)
    expected[H:2 * H] = forget_bias  # gate order i, f, g, o
    np.testing.assert_array_equal(bias, expected)


# ---- error messages ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_hidden_size(bad):
    with pytest.raises(ValueError, match=f"hidden_size must be a positive int; got {bad}"):
        LSTM(hidden_size=bad)


def test_unknown_initializer():
    with pytest.raises(ValueError, match=r"kernel_init='bogus' is not a known initializer; "
                                         r"accepted: \[.*'glorot_uniform'"):
        GRU(hidden_size=4, kernel_init="bogus")
    with pytest.raises(ValueError, match="peephole_init='nope' is not a known initializer"):
        PeepholeLSTM(hidden_size=4, peephole_init="nope")


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"activation='swish' is not a known activation; "
                                         r"accepted: \[.*'relu'"):
        SimpleRNN(hidden_size=4, activation="swish")
    with pytest.raises(ValueError, match="recurrent_activation='soft' is not a known"):
        LSTM(hidden_size=4, recurrent_activation="soft")


def test_input_with_wrong_feature_count():
    cell = LSTM(hidden_size=4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"x has 5 features \(shape \(2, 6, 5\)\) but the cell "
                                         r"was initialised for input_size=3"):
        cell.project(params, jnp.zeros((2, 6, 5), jnp.float32))
    with pytest.raises(ValueError, match=r"x must be \[B, T, D\]; got shape \(6, 3\)"):
        cell.project(params, jnp.zeros((6, 3), jnp.float32))


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown cell 'lstmm'; registered cells: \[.*'lstm'"):
        make_cell("lstmm", hidden_size=4)
    with pytest.raises(TypeError, match=r"cell 'gru' has no option\(s\) \['forget_bias'\]"):
        make_cell("gru", hidden_size=4, forget_bias=1.0)


def _dot_operand_dtypes(jaxpr) -> list:
    """The operand dtypes of every dot in ``jaxpr`` and its sub-jaxprs (scan bodies, ...)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found += [v.aval.dtype for v in eqn.invars]
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _dot_operand_dtypes(sub)
    return found


@pytest.mark.parametrize("bptt", ["autodiff", "fused"])
def test_bfloat16_matmuls_accumulate_in_float32_and_keep_float32_carries(bptt):
    """``matmul_dtype=bfloat16``: every dot of the forward and backward pass takes bf16
    operands and returns float32; carries and outputs stay float32; the result is the float32
    run's to bf16 rounding (relative 1e-2), and not equal to it (the operands were rounded)."""
    from rnnlab.recurrent import Recurrent

    x = jax.random.normal(jax.random.key(0), (4, 7, 3))
    runs = {}
    for md in (None, "bfloat16"):
        layer = Recurrent(LSTM(hidden_size=8, matmul_dtype=md), bptt=bptt)
        params = layer.init(jax.random.key(1), x)

        def loss(p, layer=layer):
            y, carry = layer.apply(p, x)
            assert y.dtype == carry.c.dtype == jnp.float32
            return jnp.sum(y ** 2)

        grad = jax.value_and_grad(loss)
        runs[md] = grad(params)
        dots = _dot_operand_dtypes(jax.make_jaxpr(loss)(params).jaxpr)
        assert len(dots) >= 2  # the input and the recurrent product, at least
        assert all(d == (jnp.bfloat16 if md else jnp.float32) for d in dots), dots
    (l32, g32), (l16, g16) = runs[None], runs["bfloat16"]
    np.testing.assert_allclose(l16, l32, rtol=1e-2)
    assert l16 != l32
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=5e-2, atol=5e-3)
    with pytest.raises(ValueError, match=r"cell\.matmul_dtype"):
        LSTM(hidden_size=4, matmul_dtype="int4")
