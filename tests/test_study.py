"""`threegate.study.analyse` on planted checkpoint sets with known answers.

Base: a random bf16 tiny Llama (HF names, 2 layers). Planted runs:
* `princ_a`, `princ_b` (RL, identical): one ULP up on the low-magnitude entries M_low of every linear weight
  (and, at an earlier checkpoint, on half of them): Jaccard 1, overlap with M_low exactly 1, sub-gap updates.
* `sub_ulp` (SFT): every weight moved by a quarter ULP in float32, then stored in bf16: nothing changes.
* `swap` (SFT): $\\Delta W = (\\sigma_1 + 1)\\,u_{k+1}v_{k+1}^\\top$ (float64 SVD) on every linear weight: the (k+1)-th
  direction becomes the top one, so the top-k subspaces rotate by 90° and the spectrum shifts.
* `rand_a`, `rand_b` (RL, a second study): independent uniformly random update masks of densities p, q.
"""

import json
import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from threegate import masks
from threegate._numerics import tol
from threegate.claims import VERDICTS
from threegate.lm.checkpoint import save_checkpoint
from threegate.lm.config import LlamaConfig
from threegate.lm.model import init_params
from threegate.lm.sparse import is_linear_name
from threegate.study import Run, StudyConfig, analyse

BF16 = ml_dtypes.bfloat16
K = 4
CFG = StudyConfig(k=K, alpha=0.5, figures=True)


def _bf16(params: dict) -> dict:
    return {k: np.asarray(v, np.float32).astype(BF16) for k, v in params.items()}


def _ulp_up(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """bf16 `w` with the entries of `mask` moved one ULP away from zero (bit arithmetic)."""
    bits = w.view(np.uint16).copy()
    bits[mask] += np.uint16(1)
    return bits.view(BF16)


def _swap(w: np.ndarray) -> np.ndarray:
    w64 = w.astype(np.float64)
    u, s, vt = np.linalg.svd(w64, full_matrices=False)
    return w64 + (s[0] + 1.0) * np.outer(u[:, K], vt[K])


def _save(folder, params, mcfg):
    save_checkpoint(folder, {k: np.asarray(v, np.float32) for k, v in params.items()}, mcfg)
    return str(folder)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    mcfg = LlamaConfig.tiny(16, d_model=32, n_layers=2, max_seq_len=16)
    base = _bf16(init_params(mcfg, jax.random.key(3)))
    rng = np.random.default_rng(0)
    low = {
        n: np.asarray(masks.low_magnitude_mask(jnp.asarray(w.astype(np.float32)), 0.5))
        for n, w in base.items()
        if is_linear_name(n)
    }
    half = {n: m & (rng.random(m.shape) < 0.5) for n, m in low.items()}
    mid = {n: _ulp_up(w, half[n]) if n in low else w for n, w in base.items()}
    princ = {n: _ulp_up(w, low[n]) if n in low else w for n, w in base.items()}
    sub = {}
    for n, w in base.items():
        w32 = w.astype(np.float32)
        ulp = np.spacing(np.abs(w)).astype(np.float32)
        sub[n] = w32 + np.sign(w32) * 0.25 * ulp
    swap = {n: _swap(w) if n in low else w.astype(np.float32) for n, w in base.items()}
    b = _save(root / "base", base, mcfg)
    ckpt_mid = _save(root / "princ_mid", mid, mcfg)
    runs = [
        Run("princ_a", "rl", (ckpt_mid, _save(root / "princ_a", princ, mcfg))),
        Run("princ_b", "rl", (_save(root / "princ_b", princ, mcfg),)),
        Run("sub_ulp", "sft", (_save(root / "sub_ulp", sub, mcfg),)),
        Run("swap", "sft", (_save(root / "swap", swap, mcfg),)),
    ]
    study = analyse(b, runs, root / "out", CFG)
    return study, root, low


def test_identical_runs_have_jaccard_one(planted):
    study, _, _ = planted
    rows = study["table2"]["rows"]
    assert {r["type"] for r in rows} == {"q", "k", "v", "o", "gate", "up", "down"}
    for r in rows:
        assert r["jaccard"] == 1.0
        assert r["random"] == pytest.approx(0.5 * 0.5 / (0.5 + 0.5 - 0.25), abs=1e-12)


def test_sub_ulp_update_changes_nothing(planted):
    study, _, _ = planted
    t1 = {r["run"]: r for r in study["table1"]}
    assert t1["sub_ulp"]["sparsity"] == 1.0 and t1["sub_ulp"]["sparsity_linear"] == 1.0
    sub = study["per_run"]["sub_ulp"]
    for t in sub["tensors"]:
        assert t["sparsity"] == 1.0
        # ΔW = 0: the same matrix decomposed twice; any angle left is float32 rounding of the subspace
        assert t["max_angle_deg"] <= math.degrees(math.asin(tol("float32", max(t["shape"]))))
        assert t["spectral_shift"] == 0.0
        assert t["overlap_low"] is None  # an empty update mask has no overlap


def test_low_magnitude_plant_comes_back_exactly(planted):
    study, _, low = planted
    t1 = {r["run"]: r for r in study["table1"]}
    n_lin = sum(m.size for m in low.values())
    assert t1["princ_a"]["sparsity_linear"] == 1 - sum(int(m.sum()) for m in low.values()) / n_lin
    for t in study["per_run"]["princ_a"]["tensors"]:
        assert t["overlap_low"] == 1.0
        assert t["overlap_low_random"] == 0.5


def test_principal_swap_rotates_and_shifts(planted):
    study, _, _ = planted
    swap = study["per_run"]["swap"]
    assert swap["k"] == [K]
    for t in swap["tensors"]:
        assert t["max_angle_deg"] > 89.0, t
        assert t["spectral_shift"] > 0.1
        # ΔW₂ > γ_k: the rigorous Wedin premise fails, and the analysis says so instead of a ratio
        assert t["wedin_rigorous_premise"] is False and t["wedin_rigorous_ratio"] is None
    princ = study["per_run"]["princ_a"]
    assert princ["mean_max_angle_deg"] < swap["mean_max_angle_deg"]
    assert princ["mean_spectral_shift"] < swap["mean_spectral_shift"]


def test_gate2_bounds_hold_on_planted_updates(planted):
    study, _, _ = planted
    seen = 0
    for run in study["per_run"].values():
        for t in run["tensors"]:
            slack = tol("float32", max(t["shape"]))
            if t["wedin_rigorous_ratio"] is not None:
                seen += 1
                assert t["wedin_rigorous_ratio"] <= 1 + slack
            if t["weyl_ratio"] is not None:
                assert t["weyl_ratio"] <= 1 + slack
    assert seen > 0


def test_claims_and_files(planted):
    study, root, _ = planted
    out = root / "out"
    assert json.loads((out / "study.json").read_text()) == study
    ids = [c["id"] for c in study["claims"]]
    assert len(ids) == len(set(ids)) >= 10
    for c in study["claims"]:
        assert c["verdict"] in VERDICTS and c["observed"] and c["paper"]
    claims = {c["id"]: c for c in study["claims"]}
    # planted answers: RL changes fewer weights than the swap, and the theorems hold
    assert claims["jaccard_above_random"]["verdict"] == "agrees"
    assert claims["wedin_rigorous_holds"]["verdict"] == "agrees"
    assert claims["weyl_holds"]["verdict"] == "agrees"
    assert claims["rl_rotates_less"]["verdict"] == "inconclusive"  # sub_ulp (SFT) rotates nothing
    for rel in study["figures"]:
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0
    assert any(f.endswith("fig3_stripes_over_time.png") for f in study["figures"])


def test_temporal_profiles_of_the_chosen_layer(planted):
    study, _, _ = planted
    (t,) = study["temporal"]
    assert t["run"] == "princ_a" and len(t["checkpoints"]) == 2
    assert t["density"][0] < t["density"][1]
    q = t["profiles"]["q.row"]
    assert q["corr"][0][0] == pytest.approx(1.0) and q["corr"][1][1] == pytest.approx(1.0)
    assert study["settings"]["layer_index"] == 1


def test_independent_random_masks_give_the_bernoulli_baseline(tmp_path):
    mcfg = LlamaConfig.tiny(16, d_model=64, n_layers=2, max_seq_len=16)
    base = _bf16(init_params(mcfg, jax.random.key(5)))
    rng = np.random.default_rng(1)
    runs = []
    for name, p in (("rand_a", 0.3), ("rand_b", 0.6)):
        w = {
            n: _ulp_up(v, rng.random(v.shape) < p) if is_linear_name(n) else v
            for n, v in base.items()
        }
        runs.append(Run(name, "rl", (_save(tmp_path / name, w, mcfg),)))
    study = analyse(
        _save(tmp_path / "base", base, mcfg),
        runs,
        tmp_path / "out",
        StudyConfig(k=K, figures=False),
    )
    for r in study["table2"]["rows"]:
        n = (
            64 * 64
            if r["type"] in ("q", "o")
            else (64 * 32 if r["type"] in ("k", "v") else 64 * 256)
        )
        # sd of J for n entries ≈ sqrt(J(1−J)/(n·(p+q−pq))); allow 5 sd
        j0 = r["random"]
        sd = math.sqrt(j0 * (1 - j0) / (n * 0.72))
        assert abs(r["jaccard"] - j0) < 5 * sd, r
        assert j0 == pytest.approx(0.18 / 0.72, abs=0.03)
