"""Integration: `threegate compare` on the real SmolLM2-135M GGUF (dequantized) and on a planted bf16 copy of it."""

import json

import ml_dtypes
import numpy as np
import pytest
import scipy.linalg as sla

from threegate.checkpoints import open_checkpoint, save_safetensors, smollm2_gguf_path
from threegate.cli import main
from threegate.compare.jsonl import read_jsonl
from threegate.masks import low_magnitude_mask

# one worker runs the SmolLM2 tests one after another: each holds GBs of memory
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]

BF16 = ml_dtypes.bfloat16
K = 16
NAMES = [
    "model.layers.3.input_layernorm.weight",
    "model.layers.3.mlp.down_proj.weight",  # 576 x 1536 (wide: Gram on the row side)
    "model.layers.3.self_attn.o_proj.weight",  # left bitwise equal
    "model.layers.3.self_attn.q_proj.weight",  # 576 x 576
]
INCLUDE = r"layers\.3\.(input_layernorm|mlp\.down_proj|self_attn\.(o|q)_proj)\.weight"
#: planted changes: name -> (number of entries, ULPs moved away from zero)
PLANT = {NAMES[0]: (5, 4), NAMES[1]: (1000, 1), NAMES[3]: (500, 2)}


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    root = tmp_path_factory.mktemp("smol")
    gguf = smollm2_gguf_path()
    with open_checkpoint(gguf) as g:
        f32 = {n: g.load(n) for n in NAMES}
    save_safetensors(f32, root / "export.safetensors")
    rng = np.random.default_rng(3)
    base = {n: w.astype(BF16) for n, w in f32.items()}
    tuned, planted = {}, {}
    for n, w in base.items():
        t = w.copy()
        if n in PLANT:
            count, ulps = PLANT[n]
            idx = np.sort(rng.choice(w.size, count, replace=False))
            bits = t.view(np.uint16).ravel()
            bits[idx] += np.uint16(ulps)
            planted[n] = idx
        tuned[n] = t
    save_safetensors(base, root / "base", max_shard_bytes=1_500_000)
    save_safetensors(tuned, root / "tuned", max_shard_bytes=1_500_000)
    return root, gguf, base, tuned, planted


def test_gguf_against_its_safetensors_export_is_identity(smol, tmp_path):
    root, gguf, _, _, _ = smol
    rc = main(
        [
            "compare",
            str(gguf),
            str(root / "export.safetensors"),
            "--out",
            str(tmp_path),
            "--include",
            INCLUDE,
            "--k",
            str(K),
            "--no-figures",
        ]
    )
    assert rc == 0
    recs = read_jsonl(tmp_path / "tensors.jsonl")
    assert sorted(r["name"] for r in recs) == NAMES
    floor = np.degrees(
        1e-4
    )  # float32 rounding floor of an angle between identical bases (style §2)
    for r in recs:
        assert r["changed"] == 0 and r["sparsity"] == 1.0 and r["changed_rule"] == "bits"
        if r["shape"][0] > 1 and len(r["shape"]) == 2:
            assert r["max_angle_u_deg"] <= floor and r["max_angle_v_deg"] <= floor
            assert r["spectral_shift"] == 0.0 and r["weyl_ratio"] == 0.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["table1"][0]["sparsity"] == 1.0


def _angles_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(sla.subspace_angles(a, b)).max())


def test_planted_bf16_copy_statistics_recovered(smol, tmp_path):
    root, _, base, tuned, planted = smol
    rc = main(
        [
            "compare",
            str(root / "base"),
            str(root / "tuned"),
            "--out",
            str(tmp_path),
            "--include",
            INCLUDE,
            "--k",
            str(K),
            "--no-figures",  # figures: tests/test_compare_cli.py
            "--layer",
            NAMES[3],
        ]
    )
    assert rc == 0
    recs = {r["name"]: r for r in read_jsonl(tmp_path / "tensors.jsonl")}
    total = sum(w.size for w in base.values())
    for n in NAMES:
        want = planted[n].size if n in planted else 0
        assert recs[n]["changed"] == want
        assert recs[n]["sparsity"] == 1 - want / base[n].size
    summary = json.loads((tmp_path / "summary.json").read_text())
    s = next(iter(summary["per_tuned"].values()))
    assert s["sparsity_all"] == pytest.approx(
        1 - sum(i.size for i in planted.values()) / total, abs=1e-15
    )
    assert recs[NAMES[2]]["max_angle_u_deg"] <= np.degrees(1e-4)
    for n in (NAMES[1], NAMES[3]):  # spectral numbers against a direct float64 SciPy computation
        r = recs[n]
        w0, w1 = base[n].astype(np.float64), tuned[n].astype(np.float64)
        u0, s0, v0t = np.linalg.svd(w0, full_matrices=False)
        u1, s1, v1t = np.linalg.svd(w1, full_matrices=False)
        dw = w1 - w0
        e2 = np.linalg.norm(dw, 2)
        gap = s0[K - 1] - s0[K]
        rel = 1e-3  # float32 measurement of angles well above its floor
        assert r["max_angle_u_deg"] == pytest.approx(_angles_deg(u0[:, :K], u1[:, :K]), rel=rel)
        assert r["max_angle_v_deg"] == pytest.approx(_angles_deg(v0t[:K].T, v1t[:K].T), rel=rel)
        assert r["spectral_shift"] == pytest.approx(
            np.linalg.norm(s1 - s0) / np.linalg.norm(s0), rel=1e-6
        )
        assert r["dw_norm2"] == pytest.approx(e2, rel=1e-10)
        assert r["weyl_ratio"] == pytest.approx(np.abs(s1 - s0).max() / e2, rel=1e-6)
        assert r["gap_k"] == pytest.approx(gap, rel=1e-9)
        assert r["wedin_ratio"] == pytest.approx(r["wedin_lhs"] * gap / e2, rel=1e-12)
        energy = np.sum((u0[:, :K].T @ dw @ v0t[:K].T) ** 2) / np.sum(dw**2)
        assert r["principal_energy_fraction"] == pytest.approx(energy, rel=1e-4)
        low = np.asarray(low_magnitude_mask(base[n].astype(np.float32), 0.5))
        mask = np.zeros(w0.size, bool)
        mask[planted[n]] = True
        assert r["overlap_low"] == np.count_nonzero(low.ravel() & mask) / planted[n].size
        assert r["weyl_ratio"] <= 1.0 and r["rel_update_fro"] == pytest.approx(
            np.linalg.norm(dw) / np.linalg.norm(w0), rel=1e-12
        )
    assert not (tmp_path / "fig4_spectrum.png").exists()  # --no-figures
