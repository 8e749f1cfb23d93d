"""Initialisation presets (cell.init_preset): each framework's default distributions, for
every built-in cell, checked against the distributions those frameworks document for their
own layers (bounds, means, variances, orthogonality)."""

import jax
import numpy as np
import pytest

from rnnlab.cells import CELLS, GRU, LSTM, PeepholeLSTM, SimpleRNN, make_cell
from rnnlab.config import compose

D, H = 32, 64  # large enough for the moments to settle within the tolerances below
BUILT_IN = ["cifg", "gru", "indrnn", "lstm", "mgu", "mingru", "minlstm", "peephole", "rnn"]
TWO_BIASES = {"lstm", "peephole", "cifg", "rnn"}  # PyTorch's bias_ih + bias_hh in one vector


def init(name, preset, **options):
    cell = make_cell(name, hidden_size=H, init_preset=preset, **options)
    return cell, {k: np.asarray(v, np.float64) for k, v in
                  cell.init(jax.random.key(7), D).items()}


def assert_uniform(w, bound, what):
    """Moments and range of U(-bound, bound)."""
    n = w.size
    assert np.abs(w).max() <= bound * (1 + 1e-6), f"{what}: outside ±{bound}"
    assert np.abs(w).max() > 0.9 * bound, f"{what}: does not reach the bound {bound}"
    var = bound ** 2 / 3
    assert abs(w.mean()) < 5 * np.sqrt(var / n), f"{what}: mean {w.mean()}"
    np.testing.assert_allclose(w.var(), var, rtol=0.15, err_msg=f"{what}: variance")


def test_every_built_in_cell_is_covered():
    assert sorted(set(CELLS) & set(BUILT_IN)) == BUILT_IN


@pytest.mark.parametrize("name", BUILT_IN)
def test_pytorch_preset_is_uniform_one_over_sqrt_h_everywhere(name):
    # torch.nn.LSTM/GRU/RNN.reset_parameters: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
    _, p = init(name, "pytorch")
    k = 1 / np.sqrt(H)
    for key, w in p.items():
        if key == "recurrent_weight":  # IndRNN's u keeps the paper's U(0, 1)
            assert 0 <= w.min() and w.max() <= 1
            continue
        if key == "bias" and name in TWO_BIASES:
            # the sum of two independent U(-k, k): triangular on [-2k, 2k], variance 2k²/3
            assert np.abs(w).max() <= 2 * k
            assert np.abs(w).max() > k  # a single uniform could not exceed k
            np.testing.assert_allclose(w.var(), 2 * k ** 2 / 3, rtol=0.3)
            continue
        assert_uniform(w.ravel(), k, f"{name}.{key}")


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "peephole"])
def test_keras_preset(name):
    # keras.layers.LSTM/GRU/SimpleRNN: glorot_uniform over the fused kernel, orthogonal over
    # the fused recurrent kernel, zero biases, unit_forget_bias for the LSTM
    cell, p = init(name, "keras")
    G = cell.gate_size
    assert_uniform(p["kernel"].ravel(), np.sqrt(6 / (D + G)), f"{name}.kernel")
    R = p["recurrent_kernel"]
    np.testing.assert_allclose(R @ R.T, np.eye(H), atol=1e-5)  # rows orthonormal over [H, G]
    if G > H:  # fused, not per block: a single [H, H] block is not orthogonal
        block = R[:, :H]
        assert not np.allclose(block @ block.T, np.eye(H), atol=1e-2)
    expected_bias = np.zeros(G)
    if name in ("lstm", "peephole"):
        expected_bias[H:2 * H] = 1.0
    np.testing.assert_array_equal(p["bias"], expected_bias)
    if name == "gru":
        np.testing.assert_array_equal(p["recurrent_bias"], np.zeros(G))
    if name == "peephole":  # TF PeepholeLSTMCell: glorot_uniform on each [H] vector
        for row in p["peephole"]:
            assert_uniform(row, np.sqrt(6 / (H + H)), "peephole row")


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_flax_preset(name):
    # flax.linen.LSTMCell/GRUCell/SimpleCell: lecun_normal input kernels (truncated normal,
    # std 1/sqrt(fan_in)), orthogonal recurrent kernel per gate, zero biases, no forget bias
    cell, p = init(name, "flax")
    w = p["kernel"].ravel()
    np.testing.assert_allclose(w.std(), 1 / np.sqrt(D), rtol=0.05)
    # truncated at 2 std of the underlying normal, whose std is 1/sqrt(D) / 0.87962566
    assert np.abs(w).max() <= 2 / np.sqrt(D) / 0.87962566 * (1 + 1e-6)
    for g in range(cell.num_gates):
        block = p["recurrent_kernel"][:, g * H:(g + 1) * H]
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-5)
    for key in ("bias", "recurrent_bias"):
        if key in p:
            np.testing.assert_array_equal(p[key], np.zeros_like(p[key]))


def test_rnnlab_preset_is_the_fields():
    _, p = init("lstm", "rnnlab", forget_bias=2.0)
    np.testing.assert_array_equal(p["bias"][H:2 * H], np.full(H, 2.0))
    assert_uniform(p["kernel"].ravel(), np.sqrt(6 / (D + 4 * H)), "kernel")


@pytest.mark.parametrize(("cls", "option"), [
    (LSTM, {"forget_bias": 2.0}), (GRU, {"kernel_init": "lecun_normal"}),
    (SimpleRNN, {"bias_init": "ones"}), (PeepholeLSTM, {"peephole_init": "zeros"})])
def test_a_preset_refuses_fields_it_sets(cls, option):
    (field, value), = option.items()
    with pytest.raises(ValueError, match=rf"cell\.{field}={value!r} conflicts with "
                                         r"cell\.init_preset='pytorch'"):
        cls(hidden_size=4, init_preset="pytorch", **option)


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"cell\.init_preset='torch' is not a preset; accepted: "
                                         r"\['rnnlab', 'pytorch', 'keras', 'flax'\]"):
        LSTM(hidden_size=4, init_preset="torch")


def test_preset_from_the_command_line():
    cfg = compose(["cell=gru", "cell.init_preset=keras"])
    assert cfg.cell.init_preset == "keras"


@pytest.mark.parametrize("preset", ["pytorch", "keras", "flax"])
def test_dense_head_initializers(preset):
    # for the driver's output head (models.py): nn.Linear / keras Dense / flax Dense defaults
    from rnnlab.cells.base import dense_initializers

    fan_in, fan_out = 64, 48
    kernel_init, bias_init = dense_initializers(preset, fan_in)
    k1, k2 = jax.random.split(jax.random.key(0))
    w = np.asarray(kernel_init(k1, (fan_in, fan_out), np.float32), np.float64).ravel()
    b = np.asarray(bias_init(k2, (fan_out,), np.float32), np.float64)
    if preset == "pytorch":
        assert_uniform(w, 1 / np.sqrt(fan_in), "kernel")
        assert np.abs(b).max() <= 1 / np.sqrt(fan_in) and np.abs(b).max() > 0.5 / np.sqrt(fan_in)
    elif preset == "keras":
        assert_uniform(w, np.sqrt(6 / (fan_in + fan_out)), "kernel")
        np.testing.assert_array_equal(b, np.zeros(fan_out))
    else:
        np.testing.assert_allclose(w.std(), 1 / np.sqrt(fan_in), rtol=0.05)
        np.testing.assert_array_equal(b, np.zeros(fan_out))
