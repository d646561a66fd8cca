"""Test configuration: hypothesis profiles, jax numerics hygiene, markers.

Hypothesis profile from THREEGATE_HYPOTHESIS_PROFILE: `ci` (default; deterministic, no database, no deadline,
25 examples), `dev` (100 examples), `thorough` (1000 examples, for nightly or accelerator runs).
jax: strict dtype promotion and rank promotion "raise" for the whole suite; float64 only inside
`with jax.enable_x64(True):` blocks, never globally.
"""

import ctypes
import gc
import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Persistent XLA compilation cache: the suite compiles many identical programs (the same tiny model and trainer
# configuration in several modules, on both workers, in both tiers); each is compiled once per cache.
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get(
        "THREEGATE_JAX_CACHE",
        os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax-cache"),
    ),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
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


def _module_groups(module) -> set[str]:
    marks = getattr(module, "pytestmark", [])
    marks = marks if isinstance(marks, list) else [marks]
    return {m.args[0] for m in marks if m.name == "xdist_group" and m.args}


@pytest.fixture(scope="module", autouse=True)
def _free_memory_after_heavy_modules(request):
    """After a module of the `smollm2` group (GBs of weights, activations and executables): drop JAX's compiled
    executables and caches, collect, and hand freed heap back to the OS, so a worker does not carry one module's
    memory into the next (the suite's peak is both workers together)."""
    yield
    if "smollm2" in _module_groups(request.module):
        jax.clear_caches()
        from threegate.lm.smollm2 import _read_cached

        _read_cached.cache_clear()
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it, never reuse it."""
    return jax.random.key(0)


@pytest.fixture
def rng():
    """A seeded NumPy generator for building float64 reference instances."""
    return np.random.default_rng(20251111)
