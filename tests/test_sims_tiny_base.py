"""The tiny pretrained base of S4–S7 (`sims._tiny.pretrained`): bf16 storage, mixed rewards, determinism."""

import jax.numpy as jnp
import numpy as np
import pytest

from sims._tiny import TINY_SIZES, pretrained
from threegate.lm.fit import evaluate
from threegate.lm.tasks import CharTask


@pytest.fixture(scope="module")
def base():
    return pretrained("quick", 0)


def test_base_is_right_part_of_the_time(base):
    # RL needs mixed rewards: well above chance (a constant two-digit answer is right <= 10% of the time) and
    # well below perfect.
    assert isinstance(base.task, CharTask) and base.task.name == "addition"
    assert 0.25 <= base.greedy_accuracy <= 0.8, base.greedy_accuracy


def test_base_params_are_bf16_representable(base):
    for name, w in base.params.items():
        w = np.asarray(w)
        assert w.dtype == np.float32, name
        rounded = np.asarray(jnp.asarray(w).astype(jnp.bfloat16).astype(jnp.float32))
        assert np.array_equal(rounded.view(np.uint32), w.view(np.uint32)), name


def test_base_accuracy_is_what_evaluate_reports(base):
    again = evaluate(base.params, base.mcfg, base.task, base.task.all_problems(), _key())
    assert again["accuracy"] == base.greedy_accuracy


def test_same_seed_same_base(base):
    pretrained.cache_clear()
    again = pretrained("quick", 0)
    for name in base.params:
        assert np.array_equal(np.asarray(again.params[name]), np.asarray(base.params[name])), name


def test_unknown_size_is_a_value_error():
    with pytest.raises(ValueError, match="size must be one of"):
        pretrained("huge", 0)
    assert set(TINY_SIZES) == {"quick", "default"}


def _key():
    import jax

    return jax.random.key(0)
