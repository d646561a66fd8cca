"""S1 (Gate III learning-rate test): the qualitative claims of paper Sec. 2.3 on a small instance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims.precision_lr import PrecisionLRConfig, make_run, sweep
from threegate import bf16

LRS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


@pytest.fixture(scope="module")
def rows():
    out = {}
    for storage in ("master", "bf16"):
        cfg = PrecisionLRConfig(m=64, n=64, steps=24, lrs=LRS, storage=storage)
        out[storage] = sweep(cfg, seed=3)
    return out


def test_sparsity_falls_with_learning_rate(rows):
    for storage, table in rows.items():
        sparsity = np.array([r["sparsity"] for r in table])
        assert np.all(np.diff(sparsity) <= 0), (storage, sparsity)
        assert sparsity[0] > 0.9 and sparsity[-1] < 0.05, (storage, sparsity)


def test_bf16_storage_loses_sub_half_ulp_updates(rows):
    # Where most per-step updates are below half an ULP (Cor. 3.6), rounding after every step discards them, so
    # bf16-stored training leaves more weights unchanged than fp32-master training. (At large lr rounding can
    # also push a weight over a cell edge, so no ordering is claimed there.)
    master = np.array([r["sparsity"] for r in rows["master"]])
    stored = np.array([r["sparsity"] for r in rows["bf16"]])
    lost = np.array([r["unrealized_step_fraction"] for r in rows["bf16"]])
    sub_ulp = lost > 0.9
    assert sub_ulp.sum() >= 2
    assert np.all(stored[sub_ulp] > master[sub_ulp])
    assert np.max(stored[sub_ulp] - master[sub_ulp]) > 0.1


def test_updates_land_on_low_magnitude_weights(rows):
    # Gate III: small |w| has a small ULP, so its updates are realized first (overlap above the alpha null).
    for table in rows.values():
        mid = [r for r in table if 0.2 < r["sparsity"] < 0.98]
        assert mid, "no learning rate in the transition regime"
        for r in mid:
            assert r["overlap_low"] > r["overlap_low_baseline"] + 0.05


def test_unrealized_fraction_matches_bf16_rule():
    # With lr tiny every per-step update is below half an ULP: bf16.realized must report all of them lost.
    cfg = PrecisionLRConfig(m=16, n=16, steps=4, lrs=(1e-9,), storage="bf16")
    (row,) = sweep(cfg, seed=0)
    assert row["unrealized_step_fraction"] == 1.0
    assert row["sparsity"] == 1.0


def test_deterministic_and_one_trace():
    traces = []
    cfg = PrecisionLRConfig(m=16, n=16, steps=3, lrs=LRS)
    run = make_run(cfg)

    def counted(key, lr):
        traces.append(1)
        return run(key, lr)

    fn = jax.jit(jax.vmap(counted, in_axes=(None, 0)))
    lrs = jnp.asarray(LRS, dtype=jnp.float32)
    a = fn(jax.random.key(1), lrs)
    b = fn(jax.random.key(1), lrs)
    assert len(traces) == 1
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.sparsity.shape == (len(LRS),)


def test_bad_storage_raises():
    with pytest.raises(ValueError, match="storage"):
        make_run(PrecisionLRConfig(storage="fp8"))


def test_initial_weights_are_bf16():
    cfg = PrecisionLRConfig(m=8, n=8, heavy_tail=True)
    from sims.precision_lr import _initial_weights

    w = _initial_weights(cfg, jax.random.key(0))
    assert w.dtype == jnp.bfloat16
    assert int(bf16.count_nonfinite(w)) == 0


def test_run_contract_writes_result_and_is_deterministic(tmp_path):
    import json

    from sims import precision_lr

    a = precision_lr.run(tmp_path / "a", "quick", 5)
    b = precision_lr.run(tmp_path / "b", "quick", 5)
    on_disk = json.loads((tmp_path / "a" / "precision-lr" / "result.json").read_text())
    assert on_disk["claims"] == a["claims"] and a["sim"] == precision_lr.NAME
    assert {c["id"] for c in a["claims"]} == {
        "S1.sparsity_falls_with_lr",
        "S1.updates_on_low_magnitude",
        "S1.bf16_storage_loses_sub_ulp",
    }
    assert all(c["verdict"] in ("agrees", "disagrees", "inconclusive") for c in a["claims"])
    for rel in a["figures"] + a["data"]:
        assert (tmp_path / "a" / "precision-lr" / rel).stat().st_size > 0
    assert a["claims"] == b["claims"]  # same seed, same numbers (every number is in `observed`)
    rows_a = (tmp_path / "a" / "precision-lr" / "rows.jsonl").read_text()
    assert rows_a == (tmp_path / "b" / "precision-lr" / "rows.jsonl").read_text()
