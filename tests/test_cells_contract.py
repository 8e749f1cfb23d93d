"""check_cell's failure messages: each broken contract rule is named, with shapes."""

import dataclasses

import jax.numpy as jnp
import pytest

from rnnlab.cells import LSTM, HiddenCarry, LSTMCarry, SimpleRNN
from rnnlab.testing import RULES, check_cell, check_init, check_shapes, describe


@dataclasses.dataclass(frozen=True)
class _TupleCarry(SimpleRNN):
    """Returns a bare tuple as the carry."""

    def step(self, params, carry, xp_BxG):
        carry, h_BxH = super().step(params, carry, xp_BxG)
        return (h_BxH,), h_BxH


@dataclasses.dataclass(frozen=True)
class _OtherCarryType(SimpleRNN):
    """Declares an LSTM carry but its step returns a HiddenCarry."""

    carry_type = LSTMCarry


@dataclasses.dataclass(frozen=True)
class _WrongMatmul(SimpleRNN):
    """Multiplies h [B, H] by the input kernel [D, H] (D != H): a shape mismatch in step."""

    def step(self, params, carry, xp_BxG):
        h_BxH = jnp.tanh(xp_BxG + carry.h @ params["kernel"])
        return HiddenCarry(h_BxH), h_BxH


@dataclasses.dataclass(frozen=True)
class _WideOutput(SimpleRNN):
    """Emits [B, 2H] and carries it: the carry's shape changes."""

    def step(self, params, carry, xp_BxG):
        carry, h_BxH = super().step(params, carry, xp_BxG)
        wide = jnp.concatenate([h_BxH, h_BxH], axis=-1)
        return HiddenCarry(wide), wide


@dataclasses.dataclass(frozen=True)
class _Miscounted(LSTM):
    """Forgets the biases in its count."""

    def param_count(self, input_size):
        return 4 * (self.hidden_size * input_size + self.hidden_size ** 2)


def test_rules_table_names_every_rule_once():
    assert len(RULES) == len(set(RULES)) and all(RULES.values())


def test_wrong_carry_type_bare_tuple():
    with pytest.raises(AssertionError, match=r"rule carry_type .*step returned the carry "
                                             r"tuple\(float32\[3, 4\]\); expected a HiddenCarry "
                                             r"like HiddenCarry\(h=float32\[3, 4\]\)"):
        check_cell(_TupleCarry(hidden_size=4), 3)


def test_wrong_carry_type_declared_other_than_returned():
    with pytest.raises(AssertionError, match=r"rule carry_type .*step returned the carry "
                                             r"HiddenCarry\(h=float32\[3, 4\]\); expected a "
                                             r"LSTMCarry like LSTMCarry\(h=float32\[3, 4\], "
                                             r"c=float32\[3, 4\]\)"):
        check_shapes(_OtherCarryType(hidden_size=4), 3)


def test_shape_mismatch_inside_step_names_the_rule_and_the_argument_shapes():
    with pytest.raises(AssertionError) as info:
        check_cell(_WrongMatmul(hidden_size=4), 3)
    message = str(info.value)
    assert message.startswith("_WrongMatmul(hidden_size=4): rule step (")
    assert "step(params, carry, xp_BxG) raised TypeError" in message
    # the arguments' shapes: params (D=3, H=4), carry [B=3, H=4], projection [B=3, G=4]
    assert ("{bias: float32[4], kernel: float32[3, 4], recurrent_kernel: float32[4, 4]}, "
            "HiddenCarry(h=float32[3, 4]), float32[3, 4]): dot_general requires") in message


def test_carry_shape_change():
    with pytest.raises(AssertionError, match=r"rule carry_shape .*changed carry field 'h' from "
                                             r"float32\[3, 4\] to float32\[3, 8\]"):
        check_cell(_WideOutput(hidden_size=4), 3)


def test_param_count_disagreeing_with_init():
    # H=2, D=3: init has 4(2·3 + 2² + 2) = 48 scalars; the formula without biases gives 40
    with pytest.raises(AssertionError, match=r"rule param_count .*param_count\(3\) = 40 but "
                                             r"init\(3\) has 48 scalars"):
        check_init(_Miscounted(hidden_size=2), 3)


def test_describe_shapes():
    carry = LSTMCarry(jnp.zeros((2, 5), jnp.float32), jnp.zeros((2, 5), jnp.float32))
    assert describe(carry) == "LSTMCarry(h=float32[2, 5], c=float32[2, 5])"
    assert describe({"w": jnp.zeros((1,), jnp.int32)}) == "{w: int32[1]}"
