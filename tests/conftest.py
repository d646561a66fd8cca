"""Test configuration: hypothesis profiles, jax numerics hygiene, markers.

Hypothesis profile from THREEGATE_HYPOTHESIS_PROFILE: `ci` (default; deterministic, no database, no deadline,
25 examples), `dev` (100 examples), `thorough` (1000 examples, for nightly or accelerator runs).
jax: strict dtype promotion and rank promotion "raise" for the whole suite; float64 only inside
`with jax.enable_x64(True):` blocks, never globally.
"""

import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

_common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, database=None, max_examples=25, **_common)
settings.register_profile("dev", max_examples=100, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("THREEGATE_HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() == "gpu":
        return
    skip_gpu = pytest.mark.skip(reason=f"needs a GPU backend; this is {jax.default_backend()}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it, never reuse it."""
    return jax.random.key(0)


@pytest.fixture
def rng():
    """A seeded NumPy generator for building float64 reference instances."""
    return np.random.default_rng(20251111)
