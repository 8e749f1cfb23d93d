"""SequenceModel: readouts (last valid step, bidirectional last), token and real inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.cells import GRU, LSTM
from rnnlab.models import SequenceModel
from rnnlab.recurrent import RecurrentStack
from rnnlab.testing import random_like

B, T, D, H, O = 3, 5, 3, 4, 2
LENGTHS = np.array([5, 3, 1], np.int32)


def inputs(seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((B, T, D)), jnp.float32)


def random_params(model, x, *args, seed=0):
    shapes = jax.eval_shape(model.init, jax.random.key(seed), x, *args)["params"]
    return random_like(shapes, np.random.default_rng(seed))


def test_readout_last_picks_the_last_valid_step():
    cells = (LSTM(H), GRU(H))
    every = SequenceModel(cells, output_size=O, readout="every", head_sizes=(3,))
    last = SequenceModel(cells, output_size=O, readout="last", head_sizes=(3,))
    x = inputs()
    params = random_params(every, x, LENGTHS)
    out_every = np.asarray(jax.jit(every.apply)({"params": params}, x, LENGTHS))
    out_last = np.asarray(jax.jit(last.apply)({"params": params}, x, LENGTHS))
    assert out_every.shape == (B, T, O) and out_last.shape == (B, O)
    np.testing.assert_allclose(out_last, out_every[np.arange(B), LENGTHS - 1], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_last_merges_forward_final_and_backward_first(merge):
    cells = (GRU(H),)
    model = SequenceModel(cells, output_size=O, readout="last", bidirectional=True, merge=merge)
    x = inputs()
    params = random_params(model, x, LENGTHS)
    out = np.asarray(jax.jit(model.apply)({"params": params}, x, LENGTHS))
    # the per-step outputs of both directions, from the stack alone
    y, _ = RecurrentStack(cells, bidirectional=True, merge="concat").apply(
        {"params": params["recurrent"]}, x, LENGTHS)
    y = np.asarray(y, np.float64)
    fwd_final = y[np.arange(B), LENGTHS - 1, :H]  # forward state after the last valid step
    bwd_first = y[:, 0, H:]  # backward state after reaching step 0
    feat = (np.concatenate([fwd_final, bwd_first], axis=-1) if merge == "concat"
            else fwd_final + bwd_first)
    kernel = np.asarray(params["output"]["kernel"], np.float64)
    bias = np.asarray(params["output"]["bias"], np.float64)
    np.testing.assert_allclose(out, feat @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_token_inputs_equal_one_hot_real_inputs():
    V = 6
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, V, (B, T)), jnp.int32)
    token_model = SequenceModel((LSTM(H),), output_size=O, vocab_size=V)
    real_model = SequenceModel((LSTM(H),), output_size=O)
    params = random_params(token_model, tokens)
    one_hot = np.eye(V, dtype=np.float32)[np.asarray(tokens)]
    out_tokens = token_model.apply({"params": params}, tokens)
    out_real = real_model.apply({"params": params}, jnp.asarray(one_hot))
    np.testing.assert_allclose(np.asarray(out_tokens), np.asarray(out_real), rtol=1e-6,
                               atol=1e-7)


def test_input_validation_errors():
    key = jax.random.key(0)
    token_model = SequenceModel((LSTM(H),), output_size=O, vocab_size=6)
    real_model = SequenceModel((LSTM(H),), output_size=O)
    with pytest.raises(ValueError, match=r"token inputs must be int \[B, T\]; got "
                                         r"float32\(3, 5, 3\)"):
        jax.eval_shape(token_model.init, key, inputs())
    with pytest.raises(ValueError, match=r"token inputs must be int \[B, T\]; got float32"):
        jax.eval_shape(token_model.init, key, jnp.zeros((B, T), jnp.float32))
    with pytest.raises(ValueError, match=r"real-valued inputs must be \[B, T, D\]; got shape "
                                         r"\(3, 5\)"):
        jax.eval_shape(real_model.init, key, jnp.zeros((B, T), jnp.int32))
    with pytest.raises(ValueError, match=r"readout='first' is not accepted; use one of "
                                         r"\('every', 'last'\)"):
        jax.eval_shape(SequenceModel((LSTM(H),), output_size=O, readout="first").init, key,
                       inputs())
    with pytest.raises(ValueError, match="head_activation='gelu2' is not a known activation"):
        jax.eval_shape(SequenceModel((LSTM(H),), output_size=O, head_sizes=(3,),
                                     head_activation="gelu2").init, key, inputs())


# minGRU's parallel mode is also checked against stepping cell by cell (test_cells_new.py);
# through the model it is the slowest case of the suite, so CI keeps minLSTM's
@pytest.mark.parametrize("name", [pytest.param("mingru", marks=pytest.mark.slow), "minlstm"])
def test_parallel_mode_through_the_model_equals_stepping(name):
    """model.parallel: the stack runs the cells' associative scan; outputs and gradients equal
    the stepped scan's, with padding (NaN in it) and both directions."""
    from rnnlab.cells import make_cell

    cells = (make_cell(name, hidden_size=4), make_cell(name, hidden_size=3))
    x = np.array(jax.random.normal(jax.random.key(0), (3, 7, 2)), np.float32)
    lengths = jnp.asarray([7, 4, 1])
    x[1, 4:] = np.nan
    x[2, 1:] = np.nan
    kwargs = dict(cells=cells, output_size=2, bidirectional=True)
    stepped, parallel = SequenceModel(**kwargs), SequenceModel(**kwargs, parallel=True)
    params = stepped.init(jax.random.key(1), jnp.asarray(x), lengths)["params"]

    def loss(model, p):
        return jnp.sum(jnp.sin(model.apply({"params": p}, jnp.asarray(x), lengths)))

    for a, b in ((loss(stepped, params), loss(parallel, params)),):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    ga = jax.grad(lambda p: loss(stepped, p))(params)
    gb = jax.grad(lambda p: loss(parallel, p))(params)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6), ga, gb)


def test_parallel_mode_is_refused_for_a_stepping_cell():
    from rnnlab.cells import LSTM

    with pytest.raises(ValueError, match=r"model.parallel=true needs a cell with a parallel"):
        SequenceModel(cells=(LSTM(hidden_size=4),), output_size=1, parallel=True).init(
            jax.random.key(0), jnp.ones((2, 3, 1)))


@pytest.mark.parametrize("preset, check", [
    ("pytorch", lambda k, b, fan_in: (np.abs(k).max() <= fan_in ** -0.5
                                      and np.abs(b).max() <= fan_in ** -0.5
                                      and np.abs(b).max() > 0)),
    ("keras", lambda k, b, fan_in: (np.abs(k).max() <= (6 / (fan_in + k.shape[1])) ** 0.5
                                    and np.all(b == 0))),
    ("rnnlab", lambda k, b, fan_in: np.all(b == 0) and abs(k.std() - fan_in ** -0.5) < 0.05),
])
def test_head_follows_the_init_preset(preset, check):
    """The output layer drawn as that framework's dense layer draws it: PyTorch's nn.Linear
    U(±1/√fan_in) on kernel and bias, Keras' Glorot-uniform kernel and zero bias, Flax's
    LeCun-normal kernel (std 1/√fan_in, truncated) and zero bias."""
    from rnnlab.cells import LSTM

    model = SequenceModel(cells=(LSTM(hidden_size=256, init_preset=preset),), output_size=64,
                          init_preset=preset, readout="last")
    params = model.init(jax.random.key(0), jnp.ones((2, 3, 1)))["params"]
    k, b = np.asarray(params["output"]["kernel"]), np.asarray(params["output"]["bias"])
    assert check(k, b, 256)
