"""The one definition of "unchanged" (`threegate.stored`): a float64/NumPy reference, NumPy and jit agreement, and
the trainer's logged sparsity equal to `compare`'s on the same pair of checkpoints (a planted ±0 flip included).
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from threegate.checkpoints import open_checkpoint
from threegate.compare import CompareConfig, run_compare, summarize
from threegate.compare.coords import changed_mask
from threegate.compare.jsonl import read_jsonl
from threegate.compare.scan import pair_scan
from threegate.lm.checkpoint import save_checkpoint
from threegate.lm.config import LlamaConfig
from threegate.lm.model import init_params
from threegate.lm.sparse import is_linear_name, unchanged_fraction
from threegate.lm.tasks import CHAR_VOCAB
from threegate.stored import codes_unchanged, count_unchanged, unchanged_mask, unchanged_mask_np

BF16 = np.dtype(ml_dtypes.bfloat16)


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float64 reference of the rule: equal values (so +0 = -0), and a NaN equal only to its own bits."""
    with np.errstate(invalid="ignore"):  # NaN codes
        x, y = a.astype(np.float64), b.astype(np.float64)
    nan = np.isnan(x) | np.isnan(y)
    uint = np.dtype(f"u{a.dtype.itemsize}")
    return np.where(nan, a.view(uint) == b.view(uint), x == y)


def _code_pairs() -> tuple[np.ndarray, np.ndarray]:
    """Every bf16 code against itself, both zeros, its neighbours and its sign flip, plus random pairs."""
    c = np.arange(1 << 16, dtype=np.uint32)
    rng = np.random.default_rng(0)
    a = [c, c, c, c, c, rng.integers(0, 1 << 16, 1 << 18)]
    b = [c, np.zeros_like(c), np.full_like(c, 0x8000), (c + 1) & 0xFFFF, c ^ 0x8000]
    b.append(rng.integers(0, 1 << 16, 1 << 18))
    return np.concatenate(a).astype(np.uint16), np.concatenate(b).astype(np.uint16)


def test_rule_matches_the_float64_reference_on_every_bf16_code():
    a, b = _code_pairs()
    ref = _reference(a.view(BF16), b.view(BF16))
    assert np.array_equal(codes_unchanged(a, b), ref)
    assert np.array_equal(unchanged_mask_np(a.view(BF16), b.view(BF16)), ref)
    got = jax.jit(unchanged_mask)(jnp.asarray(a.view(BF16)), jnp.asarray(b.view(BF16)))
    assert np.array_equal(np.asarray(got), ref)
    assert int(jax.jit(count_unchanged)(a.view(BF16), b.view(BF16))) == int(ref.sum())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rule_matches_the_reference_for_other_widths(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(4096).astype(dtype)
    y = x.copy()
    y[::3] = np.nextafter(y[::3], dtype(np.inf))
    x[:8] = [0.0, -0.0, 0.0, -0.0, np.nan, np.inf, -np.inf, 1.0]
    y[:8] = [-0.0, 0.0, 0.0, 1.0, np.nan, np.inf, np.inf, 1.0]
    ref = _reference(x, y)
    assert ref[:4].tolist() == [True, True, True, False]
    assert np.array_equal(unchanged_mask_np(x, y), ref)
    assert np.array_equal(~changed_mask(x, y)[0], ref)
    if dtype != np.float64:  # jax without x64 has no float64
        assert np.array_equal(np.asarray(unchanged_mask(jnp.asarray(x), jnp.asarray(y))), ref)


def test_streaming_pass_uses_the_same_rule():
    a, b = _code_pairs()
    finite = ((a & 0x7F80) != 0x7F80) & (
        (b & 0x7F80) != 0x7F80
    )  # the scan's callers exclude non-finite
    a, b = a[finite].view(BF16), b[finite].view(BF16)
    with np.errstate(over="ignore"):  # ||W1 - W0||^2 of far-apart pairs; only the mask is checked
        scan = pair_scan(a, b, None)
    assert np.array_equal(scan.mask, ~_reference(a, b))
    assert scan.changed == int((~_reference(a, b)).sum())


def test_rule_refuses_mixed_or_non_float_inputs():
    with pytest.raises(TypeError, match="one dtype"):
        unchanged_mask_np(np.zeros(2, np.float32), np.zeros(2, BF16))
    with pytest.raises(TypeError, match="floating"):
        unchanged_mask_np(np.zeros(2, np.int16), np.zeros(2, np.int16))
    with pytest.raises(TypeError, match="unsigned"):
        codes_unchanged(np.zeros(2, np.int16), np.zeros(2, np.int16))
    with pytest.raises(ValueError, match="shape"):
        unchanged_mask(jnp.zeros(2, jnp.bfloat16), jnp.zeros(3, jnp.bfloat16))


# ------------------------------------------------------------------ trainer sparsity == compare sparsity

TINY = LlamaConfig.tiny(CHAR_VOCAB, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)


def _tuned(base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Base moved by one ULP at a random 10% of entries, with planted zero pairs in two linear weights:
    +0 → -0 and -0 → +0 (unchanged), +0 → +0, and +0 → smallest subnormal (changed)."""
    rng = np.random.default_rng(2)
    tuned = {}
    for name, w in base.items():
        u = w.view(np.uint16).copy()
        hit = rng.random(u.shape) < 0.1
        u[hit] += 1
        tuned[name] = u.view(BF16)
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        w0, w1 = base[name].view(np.uint16).reshape(-1), tuned[name].view(np.uint16).reshape(-1)
        w0[:4] = [0x0000, 0x8000, 0x0000, 0x0000]
        w1[:4] = [0x8000, 0x0000, 0x0000, 0x0001]
    return tuned


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("stored")
    params = init_params(TINY, jax.random.key(5))
    base = {n: np.array(w.astype(jnp.bfloat16)) for n, w in params.items()}
    tuned = _tuned(base)
    save_checkpoint(root / "base", base, TINY)
    save_checkpoint(root / "tuned", tuned, TINY)
    return root


def test_trainer_sparsity_equals_compare_sparsity_with_signed_zero_flips(pair, tmp_path):
    with open_checkpoint(pair / "base") as a, open_checkpoint(pair / "tuned") as b:
        ref = {n: np.asarray(a.load(n)) for n in a.names()}
        stored = {n: np.asarray(b.load(n)) for n in b.names()}
    q = "model.layers.0.self_attn.q_proj.weight"
    assert ref[q].view(np.uint16).reshape(-1)[0] == 0x0000
    assert stored[q].view(np.uint16).reshape(-1)[0] == 0x8000  # the +0 → -0 flip survived the files

    trainer = jax.jit(unchanged_fraction)(
        {n: jnp.asarray(w) for n, w in stored.items()}, {n: jnp.asarray(w) for n, w in ref.items()}
    )
    run_compare(
        CompareConfig(str(pair / "base"), (str(pair / "tuned"),), str(tmp_path), spectral=False)
    )
    summary = summarize(tmp_path)
    recs = read_jsonl(tmp_path / "tensors.jsonl")
    (per,) = summary["per_tuned"].values()

    # float64 reference over the same files: equal values are unchanged (+0 = -0).
    same = {n: int((ref[n].astype(np.float64) == stored[n].astype(np.float64)).sum()) for n in ref}
    numel = {n: ref[n].size for n in ref}
    lin = [n for n in ref if is_linear_name(n)]

    assert {r["name"] for r in recs} == set(ref)
    compare_unchanged = {r["name"]: r["numel"] - r["changed"] for r in recs}
    assert compare_unchanged == same
    assert (
        int(trainer["unchanged"])
        == sum(same.values())
        == per["numel_all"] - sum(r["changed"] for r in recs)
    )
    assert int(trainer["params"]) == per["numel_all"] == sum(numel.values())
    assert int(trainer["unchanged_linear"]) == sum(same[n] for n in lin)
    assert int(trainer["params_linear"]) == per["numel_linear"] == sum(numel[n] for n in lin)
    assert per["sparsity_all"] == int(trainer["unchanged"]) / int(trainer["params"])
    assert per["sparsity_linear"] == int(trainer["unchanged_linear"]) / int(
        trainer["params_linear"]
    )
    assert float(trainer["sparsity"]) == pytest.approx(per["sparsity_all"], rel=2**-23)
    # the planted flips are counted unchanged by both; the subnormal move is a change
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        m = ~unchanged_mask_np(ref[name], stored[name]).reshape(-1)
        assert m[:4].tolist() == [False, False, False, True]
