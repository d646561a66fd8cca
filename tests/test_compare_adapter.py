"""A PEFT LoRA adapter as TUNED: `compare BASE ADAPTER` equals `compare BASE MERGED`, where MERGED is peft's own
`merge_and_unload` of the same adapter saved by `save_pretrained`; ΔW = (α/r)·B·A against a float64 reference."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from threegate.checkpoints import AdapterCheckpoint, open_checkpoint  # noqa: E402
from threegate.cli import main  # noqa: E402
from threegate.compare import CompareConfig, run_compare  # noqa: E402
from threegate.compare.jsonl import read_jsonl  # noqa: E402

TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj"]


def _llama(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=96,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(tmp_path / "base")
    return model


def _adapter(model, tmp_path, tag: str, **lora):
    """A trained-looking adapter (random B, not zero) saved by peft, and peft's merged model saved beside it."""
    torch.manual_seed(1)
    kw = dict(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False)
    kw.update(lora)
    autocast = kw.pop("autocast", True)
    pm = peft.get_peft_model(model, peft.LoraConfig(**kw), autocast_adapter_dtype=autocast)
    with torch.no_grad():  # B of a fresh adapter is small; make the update visible in bf16
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.mul_(50.0)
    pm.save_pretrained(tmp_path / f"adapter_{tag}")
    deltas = {}
    for n, mod in pm.named_modules():
        if isinstance(mod, peft.tuners.lora.Linear):
            a = mod.lora_A["default"].weight.detach().double().numpy()
            b = mod.lora_B["default"].weight.detach().double().numpy()
            deltas[n.removeprefix("base_model.model.") + ".weight"] = (
                mod.scaling["default"],
                b @ a,
            )
    merged = pm.merge_and_unload()
    merged.save_pretrained(tmp_path / f"merged_{tag}")
    return tmp_path / f"adapter_{tag}", tmp_path / f"merged_{tag}", deltas


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("peft")
    model = _llama(root)
    adapter, merged, deltas = _adapter(model, root, "f32")
    return root, adapter, merged, deltas


def _records(base, tuned, out) -> dict[str, dict]:
    run_compare(CompareConfig(str(base), (str(tuned),), str(out), k=4))
    return {
        r["name"]: {k: v for k, v in r.items() if k != "tuned"}
        for r in read_jsonl(out / "tensors.jsonl")
    }


def _stored(recs: dict[str, dict]) -> dict[str, dict]:
    return {n: {k: v for k, v in r.items() if k != "adapter"} for n, r in recs.items()}


def test_delta_is_alpha_over_r_b_a(pair):
    root, adapter, _, deltas = pair
    with open_checkpoint(root / "base") as base, AdapterCheckpoint(adapter, base) as ad:
        assert sorted(ad.targets()) == sorted(deltas)
        assert len(deltas) == 2 * len(TARGETS)
        for name, (scale, ba) in deltas.items():
            assert scale == 8 / 4
            d = ad.delta(name)
            ref = scale * ba  # float64 reference
            tol = 8 * np.finfo(np.float32).eps * np.abs(ref).max()
            np.testing.assert_allclose(d, ref, rtol=0, atol=tol)
            np.testing.assert_array_equal(ad.load_rows(name, 3, 9), ad.load(name)[3:9])
        assert ad.delta("model.norm.weight") is None


def test_adapter_compares_equal_to_peft_merged_model(pair, tmp_path):
    root, adapter, merged, deltas = pair
    with (
        open_checkpoint(merged) as m,
        open_checkpoint(root / "base") as base,
        AdapterCheckpoint(adapter, base) as ad,
    ):
        for name in m.names():
            np.testing.assert_array_equal(
                ad.load(name).view(np.uint16), m.load(name).view(np.uint16)
            )
    a = _records(root / "base", adapter, tmp_path / "a")
    b = _records(root / "base", merged, tmp_path / "b")
    assert _stored(a) == b  # every stored-weight metric equals the merged model's
    assert {n for n, r in a.items() if "adapter" in r} == set(deltas)
    touched = [r for r in a.values() if r["name"] in deltas]
    assert touched and all(
        r["changed"] > 0 and r["principal_energy_fraction"] is not None for r in touched
    )
    assert all(r["changed"] == 0 for r in a.values() if r["name"] not in deltas)


def test_bf16_adapter_rslora_and_alpha_pattern_match_peft(tmp_path):
    model = _llama(tmp_path)
    adapter, merged, _ = _adapter(
        model, tmp_path, "bf16", autocast=False, use_rslora=True, alpha_pattern={"v_proj": 32}
    )
    assert json.loads((adapter / "adapter_config.json").read_text())["use_rslora"] is True
    with (
        open_checkpoint(merged) as m,
        open_checkpoint(tmp_path / "base") as base,
        AdapterCheckpoint(adapter, base) as ad,
    ):
        assert str(ad._adapter.info(ad._adapter.names()[0]).dtype) == "bfloat16"
        for name in m.names():
            np.testing.assert_array_equal(
                ad.load(name).view(np.uint16), m.load(name).view(np.uint16)
            )


def test_dora_adapter_refused_in_one_line(pair, tmp_path, capsys):
    root, adapter, _, _ = pair
    bad = tmp_path / "dora"
    bad.mkdir()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    (bad / "adapter_model.safetensors").write_bytes(
        (adapter / "adapter_model.safetensors").read_bytes()
    )
    rc = main(
        ["compare", str(root / "base"), str(bad), "--out", str(tmp_path / "o"), "--no-figures"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "DoRA" in err[0]


def test_adapter_block_is_the_exact_delta_geometry(pair, tmp_path):
    """The `adapter` block against float64 NumPy/SciPy on W0 and the exact (α/r)·B·A."""
    import scipy.linalg as sla

    root, adapter, _, deltas = pair
    recs = _records(root / "base", adapter, tmp_path / "a")
    k = 4
    with open_checkpoint(root / "base") as base:
        for name, (scale, ba) in deltas.items():
            blk = recs[name]["adapter"]
            assert blk["rank"] == 4 and blk["scaling"] == scale
            w0 = base.load(name).astype(np.float64)
            d = scale * ba
            u, s, vt = sla.svd(w0)
            energy = np.linalg.norm(u[:, :k].T @ d @ vt[:k].T) ** 2 / np.linalg.norm(d) ** 2
            assert blk["principal_energy_fraction"] == pytest.approx(energy, rel=1e-5)
            assert blk["principal_energy_null"] == k * k / w0.size
            assert blk["rel_update_fro"] == pytest.approx(
                np.linalg.norm(d) / np.linalg.norm(w0), rel=1e-6
            )
            u1, s1, _ = sla.svd(w0 + d)
            ang = np.degrees(sla.subspace_angles(u[:, :k], u1[:, :k])).max()
            assert blk["max_angle_u_deg"] == pytest.approx(ang, rel=1e-3, abs=1e-4)
            assert blk["spectral_shift"] == pytest.approx(
                np.linalg.norm(s1 - s) / np.linalg.norm(s), rel=1e-4
            )
