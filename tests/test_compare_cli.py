"""`threegate compare` end to end through `threegate.cli.main`: planted checkpoints, resume, Table 2, error paths."""

import json
import re

import ml_dtypes
import numpy as np
import pytest

from threegate.checkpoints import save_safetensors
from threegate.cli import main
from threegate.compare.jsonl import read_jsonl

BF16 = ml_dtypes.bfloat16
M, N = 40, 32  # every matrix is M x N (as in tests/test_compare.py): one shape, one compile
K = "6"
LINEAR = [
    f"model.layers.{i}.{m}"
    for i in (0, 1)
    for m in ("self_attn.q_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight")
]


def _step(w: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    bits = w.view(np.uint16).copy().ravel()
    bits[idx] += np.uint16(n)  # n ULPs away from zero
    return bits.reshape(w.shape).view(BF16)


def _sub_half_ulp(w: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Entries `idx` moved by 0.4 ULP in float32, then stored as bf16 again (must round back)."""
    w32 = w.astype(np.float32).ravel()
    ulp = np.spacing(np.abs(w.ravel()[idx])).astype(np.float32)
    w32[idx] += np.sign(w32[idx]) * 0.4 * ulp
    return w32.reshape(w.shape).astype(BF16)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("ckpt")
    base = {"model.embed_tokens.weight": (rng.standard_normal((M, N)) * 0.02).astype(BF16)}
    for name in LINEAR:
        base[name] = (rng.standard_normal((M, N)) * 0.05).astype(BF16)
    base["model.norm.weight"] = np.ones(N, BF16)
    save_safetensors(base, root / "base", max_shard_bytes=3000)  # sharded: several files + index
    planted = {}
    for t in ("a", "b"):
        tuned, sets = {}, {}
        for name, w in base.items():
            n = {"a": 37, "b": 50}[t] if w.ndim == 2 else 3
            idx = np.sort(rng.choice(w.size, n, replace=False))
            rest = np.setdiff1d(np.arange(w.size), idx)[: w.size // 4]
            tuned[name] = _step(_sub_half_ulp(w, rest), idx, 1 + int(rng.integers(3)))
            sets[name] = idx
        save_safetensors(tuned, root / f"tuned_{t}.safetensors")
        planted[t] = sets
    return root, base, planted


def _run(capsys, *args) -> tuple[int, str, str]:
    rc = main(["compare", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def full_run(ckpts, tmp_path_factory):
    root, _, _ = ckpts
    out = tmp_path_factory.mktemp("full")
    rc = main(
        [
            "compare",
            str(root / "base"),
            str(root / "tuned_a.safetensors"),
            str(root / "tuned_b.safetensors"),
            "--out",
            str(out),
            "--k",
            K,
            "--no-figures",
        ]
    )
    assert rc == 0
    return out


def _records(out):
    return {(r["name"], r["tuned"]): r for r in read_jsonl(out / "tensors.jsonl")}


def test_exact_counts_sparsity_and_table2(ckpts, full_run):
    root, base, planted = ckpts
    recs = _records(full_run)
    keys = [str((root / f"tuned_{t}.safetensors").resolve()) for t in ("a", "b")]
    assert len(recs) == 2 * len(base) == len(read_jsonl(full_run / "tensors.jsonl"))
    for t, key in zip("ab", keys, strict=True):
        for name, idx in planted[t].items():
            r = recs[(name, key)]
            assert r["changed"] == idx.size
            assert r["sparsity"] == 1 - idx.size / base[name].size
    summary = json.loads((full_run / "summary.json").read_text())
    total = sum(w.size for w in base.values())
    lin = sum(base[n].size for n in LINEAR)
    for t, key in zip("ab", keys, strict=True):
        s = summary["per_tuned"][key]
        assert s["sparsity_all"] == pytest.approx(
            1 - sum(i.size for i in planted[t].values()) / total, abs=1e-15
        )
        assert s["sparsity_linear"] == pytest.approx(
            1 - sum(planted[t][n].size for n in LINEAR) / lin, abs=1e-15
        )
    assert summary["table1"][0]["sparsity"] == summary["per_tuned"][keys[0]]["sparsity_all"]
    # Table 2 by hand: per tensor J = |A ∩ B| / |A ∪ B|, baseline pq/(p+q-pq); mean over the type's tensors
    for t in ("q_proj", "down_proj"):
        names = [n for n in LINEAR if t in n]
        js, bs = [], []
        for n in names:
            a, b = set(planted["a"][n]), set(planted["b"][n])
            js.append(len(a & b) / len(a | b))
            p, q = len(a) / base[n].size, len(b) / base[n].size
            bs.append(p * q / (p + q - p * q))
        row = summary["table2"]["all_layers"][t]
        assert row["jaccard"] == pytest.approx(np.mean(js), rel=1e-12)
        assert row["random"] == pytest.approx(np.mean(bs), rel=1e-12)
        assert row["matrix"][0][1] == pytest.approx(np.mean(js), rel=1e-12)
    chosen = summary["table2"]["layer"]
    cons = np.load(full_run / "consensus.npz")
    name = f"model.layers.{chosen}.self_attn.q_proj.weight"
    expect = np.zeros(M * N)
    for t in "ab":
        expect[planted[t][name]] += 0.5
    np.testing.assert_array_equal(cons[name].ravel(), expect)
    r = recs[(LINEAR[0], keys[0])]
    assert r["k"] == int(K) and r["measure"]["svd_method"] == "gram-eigh-f64"
    assert r["spectral_skipped"] is None and r["max_angle_u_deg"] > 0
    emb = recs[("model.embed_tokens.weight", keys[0])]
    assert emb["max_angle_u_deg"] is None and "embedding" in emb["spectral_skipped"]


def test_resume_after_filtered_and_truncated_runs(ckpts, full_run, tmp_path, capsys):
    root, _, _ = ckpts
    args = [
        root / "base",
        root / "tuned_a.safetensors",
        root / "tuned_b.safetensors",
        "--out",
        tmp_path,
        "--k",
        K,
    ]
    rc, _, _ = _run(capsys, *args, "--include", r"layers\.0\.", "--no-figures")
    assert rc == 0
    partial = read_jsonl(tmp_path / "tensors.jsonl")
    assert 0 < len(partial) < len(read_jsonl(full_run / "tensors.jsonl"))
    rc, _, err = _run(capsys, *args, "--no-figures")
    assert rc == 2 and "--resume" in err  # never overwrites silently
    # settings must match (the name filter may differ)
    rc, _, err = _run(capsys, *args[:-1], "5", "--resume", "--no-figures")
    assert rc == 2 and "different settings" in err and "k: 6 -> 5" in err
    # simulate a crash mid-record: a cut-off last line
    data = (tmp_path / "tensors.jsonl").read_bytes()
    (tmp_path / "tensors.jsonl").write_bytes(data[: len(data) - 40])
    rc, out, _ = _run(capsys, *args, "--resume", "--include", r"layers\.0\.", "--no-figures")
    assert rc == 0
    rc, out, _ = _run(capsys, *args, "--resume", "--figures")
    assert rc == 0 and "sparsity" in out
    got = read_jsonl(tmp_path / "tensors.jsonl")
    pairs = [(r["name"], r["tuned"]) for r in got]
    assert len(pairs) == len(set(pairs))
    full = _records(full_run)
    assert set(pairs) == set(full)
    for r in got:
        assert r == full[(r["name"], r["tuned"])]
    p_full = {
        (r["name"], r["tuned_a"], r["tuned_b"]): r for r in read_jsonl(full_run / "pairs.jsonl")
    }
    p_got = read_jsonl(tmp_path / "pairs.jsonl")
    assert len(p_got) == len(p_full) and all(
        r == p_full[(r["name"], r["tuned_a"], r["tuned_b"])] for r in p_got
    )
    for fig in (
        "fig2_consensus.png",
        "fig3_update_ratios.png",
        "fig4_spectrum.png",
        "fig5_overlap.png",
    ):
        assert (tmp_path / fig).stat().st_size > 0


def _one_line_error(rc, err):
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("threegate compare: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def bad_inputs(ckpts, tmp_path_factory):
    root, base, _ = ckpts
    bad = tmp_path_factory.mktemp("bad")
    fewer = {k: v for k, v in base.items() if "down_proj" not in k}
    save_safetensors(fewer, bad / "fewer.safetensors")
    reshaped = dict(base)
    reshaped["model.norm.weight"] = np.ones(N + 1, BF16)
    save_safetensors(reshaped, bad / "reshaped.safetensors")
    data = (root / "tuned_a.safetensors").read_bytes()
    (bad / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (bad / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (bad / "model.txt").write_text("not a checkpoint")
    nan = dict(base)
    w = base[LINEAR[1]].copy()
    w[2, 3] = np.nan
    nan[LINEAR[1]] = w
    save_safetensors(nan, bad / "nan.safetensors")
    return bad


@pytest.mark.parametrize(
    ("tuned", "extra", "pattern"),
    [
        ("fewer.safetensors", [], r"missing .*down_proj"),
        ("reshaped.safetensors", [], r"shape mismatch.*model\.norm\.weight: \(32,\) vs \(33,\)"),
        ("truncated.safetensors", [], r"truncated\.safetensors"),
        ("garbage.safetensors", [], r"garbage\.safetensors"),
        ("model.txt", [], r"unknown checkpoint format"),
        ("absent.safetensors", [], r"no such file"),
        ("nan.safetensors", ["--alpha", "1.5"], r"--alpha"),
        ("nan.safetensors", ["--k", "0"], r"--k"),
        ("nan.safetensors", ["--include", "("], r"--include"),
        ("nan.safetensors", ["--layer", "17"], r"--layer 17"),
        ("nan.safetensors", ["--include", "nothing-matches"], r"no tensor names selected"),
    ],
)
def test_bad_input_one_line_exit_2(ckpts, bad_inputs, tmp_path, capsys, tuned, extra, pattern):
    root, _, _ = ckpts
    rc, _, err = _run(
        capsys,
        root / "base",
        bad_inputs / tuned,
        "--out",
        tmp_path / "o",
        "--k",
        K,
        "--no-figures",
        *extra,
    )
    assert re.search(pattern, _one_line_error(rc, err))


def test_nonfinite_reported_per_tensor(ckpts, bad_inputs, tmp_path, capsys):
    root, base, _ = ckpts
    rc, out, err = _run(
        capsys,
        root / "base",
        bad_inputs / "nan.safetensors",
        "--out",
        tmp_path,
        "--k",
        K,
        "--no-figures",
        "--include",
        "layers\\.0|embed",
        "--embeddings",
    )
    assert rc == 0 and "NaN/Inf" in err and LINEAR[1] in out
    recs = {r["name"]: r for r in read_jsonl(tmp_path / "tensors.jsonl")}
    bad = recs[LINEAR[1]]
    assert bad["nonfinite"] == {"base": 0, "tuned": 1}
    assert bad["changed"] is None and bad["overlap_low"] is None and bad["spectral_shift"] is None
    assert recs[LINEAR[0]]["changed"] == 0  # the others are unaffected
    emb = recs["model.embed_tokens.weight"]  # --embeddings: spectral work on the embedding too
    assert emb["spectral_skipped"] is None and emb["max_angle_u_deg"] is not None
    summary = json.loads((tmp_path / "summary.json").read_text())
    s = next(iter(summary["per_tuned"].values()))
    assert (
        s["nonfinite_tensors"] == [LINEAR[1]]
        and s["numel_excluded_nonfinite"] == base[LINEAR[1]].size
    )
    assert s["sparsity_all"] == 1.0
