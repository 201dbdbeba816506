"""chainrule.random: the default generator, Generator objects (torch.Generator's methods) and
use_generator."""

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.random import Generator, _rng, use_generator


def test_generator_seeded_like_manual_seed_draws_the_same_numbers():
    g = Generator().manual_seed(42)
    cr.manual_seed(42)
    np.testing.assert_array_equal(g.random(5), _rng().random(5))
    np.testing.assert_array_equal(g.integers(0, 100, 7), _rng().integers(0, 100, 7))
    assert g.initial_seed() == 42


def test_generator_state_round_trips_through_json_and_continues_the_stream():
    g = Generator().manual_seed(7)
    g.normal(size=3)
    state = json.loads(json.dumps(g.get_state()))  # a checkpoint keeps it as JSON
    expected = g.random(4)
    h = Generator().set_state(state)
    np.testing.assert_array_equal(h.random(4), expected)
    assert h.set_state(state) is h and g.manual_seed(1) is g


def test_generator_defaults_and_fresh_seeds():
    assert Generator().initial_seed() == 67280421310721  # torch.Generator's default seed
    g = Generator()
    s = g.seed()
    assert isinstance(s, int) and s >= 0 and g.initial_seed() == s
    np.testing.assert_array_equal(g.random(3), np.random.default_rng(s).random(3))


def test_generator_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        Generator().manual_seed(-1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got 1.5"):
        Generator().manual_seed(1.5)
    with pytest.raises(ValueError, match="expected the state of a PCG64 bit generator"):
        Generator().set_state({"bit_generator": "MT19937"})
    with pytest.raises(ValueError, match="device must be 'cpu'"):
        Generator(device="cuda")


def test_use_generator_makes_it_the_default_inside_the_block_only():
    cr.manual_seed(0)
    before = cr.get_rng_state()
    g = Generator().manual_seed(3)
    with use_generator(g):
        assert _rng() is g.numpy
        layer = nn.Linear(4, 2)  # initialisation draws from g
    assert cr.get_rng_state() == before  # the default generator did not move
    cr.manual_seed(3)
    np.testing.assert_array_equal(layer.weight.data, nn.Linear(4, 2).weight.data)
    before = cr.get_rng_state()
    with pytest.raises(RuntimeError), use_generator(g):
        raise RuntimeError
    assert cr.get_rng_state() == before  # restored after an exception too
    with pytest.raises(TypeError, match="use_generator: expected a chainrule.random.Generator"):
        with use_generator(3):
            pass


def test_a_generator_stands_in_for_a_numpy_generator_in_generator_arguments():
    a = cr.rand(2, 3, generator=Generator().manual_seed(5))
    b = cr.rand(2, 3, generator=np.random.default_rng(5))
    np.testing.assert_array_equal(a.data, b.data)
