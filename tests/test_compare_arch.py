"""`threegate compare` on the checkpoints users have: tiny random models of each transformers family, saved by
`transformers` itself (`from_config` + `save_pretrained`, bf16), "tuned" = 30% of entries moved.

Every family must give typed records: no projection entry outside the linear aggregate, q/k/v parts for
fused matrices, expert indices for MoE. The split of a fused matrix is checked against the model's own
forward (a planted answer: comparing the parts cut by hand must give the same records).
"""

import json
import math
import shutil

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from threegate.checkpoints import layer_index, open_checkpoint, save_safetensors  # noqa: E402
from threegate.checkpoints.arch import PROJECTION_TYPES, Architecture, read_config  # noqa: E402
from threegate.cli import main  # noqa: E402
from threegate.compare import CompareConfig, run_compare, summarize  # noqa: E402
from threegate.compare.jsonl import read_jsonl  # noqa: E402

BF16 = ml_dtypes.bfloat16
SMALL = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=96,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
MLA = dict(
    n_routed_experts=4,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
    n_shared_experts=1,
    q_lora_rank=32,
    kv_lora_rank=16,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=16,
    first_k_dense_replace=1,
    n_group=1,
    topk_group=1,
)
GPT = dict(
    n_embd=64, n_layer=2, n_head=4, n_positions=64, vocab_size=96, bos_token_id=1, eos_token_id=2
)

#: family -> (config class name, config overrides, expected experts per MoE layer, fused)
FAMILIES = {
    "llama": ("LlamaConfig", {}, 0),
    "mistral": ("MistralConfig", {}, 0),
    "qwen2": ("Qwen2Config", {}, 0),
    "qwen3": ("Qwen3Config", dict(head_dim=16), 0),
    "gemma": ("GemmaConfig", dict(head_dim=16), 0),
    "gemma2": ("Gemma2Config", dict(head_dim=16), 0),
    "gemma3_text": ("Gemma3TextConfig", dict(head_dim=16), 0),
    "phi3": ("Phi3Config", {}, 0),
    "gpt2": ("GPT2Config", GPT, 0),
    "gptj": ("GPTJConfig", dict(GPT, rotary_dim=8), 0),
    "gpt_neox": ("GPTNeoXConfig", dict(num_key_value_heads=4), 0),
    "falcon": ("FalconConfig", dict(new_decoder_architecture=True, num_kv_heads=2), 0),
    "falcon_mq": ("FalconConfig", dict(multi_query=True), 0),
    "falcon_mha": ("FalconConfig", dict(multi_query=False, new_decoder_architecture=False), 0),
    "olmo": ("OlmoConfig", {}, 0),
    "olmoe": ("OlmoeConfig", MOE, 4),
    "mixtral": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2), 4),
    "qwen2_moe": ("Qwen2MoeConfig", dict(MOE, shared_expert_intermediate_size=64), 4),
    "qwen3_moe": ("Qwen3MoeConfig", dict(MOE, head_dim=16), 4),
    "deepseek_v2": ("DeepseekV2Config", MLA, 4),
    "deepseek_v3": ("DeepseekV3Config", MLA, 4),
}
FUSED = {"phi3", "gpt2", "gpt_neox", "falcon", "falcon_mq", "falcon_mha"}


def _moved(w: np.ndarray, rng, frac: float = 0.3) -> np.ndarray:
    """Copy of `w` with `frac` of its entries moved 1-3 ULPs away from zero (bit arithmetic, stored dtype)."""
    uint = np.dtype(f"u{w.dtype.itemsize}")
    bits = w.view(uint).copy().ravel()
    idx = rng.choice(bits.size, int(frac * bits.size), replace=False)
    bits[idx] += rng.integers(1, 4, idx.size).astype(uint)
    return bits.reshape(w.shape).view(w.dtype)


def _save_tuned(base_dir, tuned_dir, rng) -> None:
    with open_checkpoint(base_dir) as c:
        tensors = {n: _moved(c.load(n), rng) for n in c.names()}
    save_safetensors(tensors, tuned_dir / "model.safetensors")
    shutil.copy(base_dir / "config.json", tuned_dir / "config.json")


def _build(family: str, root):
    cls_name, extra, _ = FAMILIES[family]
    kw = dict(GPT if cls_name in ("GPT2Config", "GPTJConfig") else SMALL)
    kw.update(extra)
    torch.manual_seed(0)
    cfg = getattr(transformers, cls_name)(**kw)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    base = root / family / "base"
    model.save_pretrained(base)
    tuned = root / family / "tuned"
    tuned.mkdir()
    _save_tuned(base, tuned, np.random.default_rng(len(family)))
    return model, base, tuned


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: _build(f, root) for f in FAMILIES}


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    out = {}
    for family, (_, base, tuned) in models.items():
        folder = tmp_path_factory.mktemp(f"run_{family}")
        run_compare(CompareConfig(str(base), (str(tuned),), str(folder), spectral=False))
        out[family] = (summarize(folder), read_jsonl(folder / "tensors.jsonl"), folder)
    return out


def _stored(base) -> dict[str, tuple[int, ...]]:
    with open_checkpoint(base) as c:
        return {n: c.info(n).shape for n in c.names()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_projection_entry_is_in_the_linear_aggregate(models, runs, family):
    _, base, _ = models[family]
    summary, recs, _ = runs[family]
    stored = _stored(base)
    # independent count: every 2-D tensor inside a block is a projection in these families
    block_matrices = sum(
        math.prod(s) for n, s in stored.items() if len(s) == 2 and layer_index(n) is not None
    )
    s = next(iter(summary["per_tuned"].values()))
    assert s["numel_linear"] == block_matrices > 0
    assert not [r["name"] for r in recs if r["layer_type"] == "other"]
    assert not [w for w in summary["warnings"] if "typed other" in w]
    # all parameters are covered exactly once: the parts of a fused matrix add up to it
    assert s["numel_all"] == sum(math.prod(x) for x in stored.values())
    # tuned moved 30% of the entries of every tensor
    assert s["sparsity_linear"] == pytest.approx(0.7, abs=0.01)
    assert all(
        r["layer_type"] in PROJECTION_TYPES
        for r in recs
        if len(r["shape"]) == 2 and r["layer"] is not None
    )


@pytest.mark.parametrize("family", sorted(FUSED))
def test_fused_matrices_have_qkv_parts_in_out_in_layout(models, runs, family):
    model, _, _ = models[family]
    _, recs, _ = runs[family]
    cfg = model.config
    d = cfg.hidden_size // cfg.num_attention_heads
    nh = cfg.num_attention_heads
    nkv = {
        "phi3": getattr(cfg, "num_key_value_heads", nh),
        "gpt2": nh,
        "gpt_neox": nh,
        "falcon": getattr(cfg, "num_kv_heads", nh),
        "falcon_mq": 1,
        "falcon_mha": nh,
    }[family]
    for layer in range(2):
        mine = {
            r["layer_type"]: r
            for r in recs
            if r["layer"] == layer and r.get("part") in ("q", "k", "v")
        }
        mine = {t: r for t, r in mine.items() if len(r["shape"]) == 2}
        assert set(mine) == {"q_proj", "k_proj", "v_proj"}
        assert mine["q_proj"]["shape"] == [nh * d, cfg.hidden_size]
        assert mine["k_proj"]["shape"] == mine["v_proj"]["shape"] == [nkv * d, cfg.hidden_size]
    types = {r["layer_type"] for r in recs if r["layer"] == 0 and len(r["shape"]) == 2}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"} <= types
    if family == "phi3":
        assert {"gate_proj"} <= types
    if family == "gpt2":  # Conv1D: stored [in, out], measured [out, in]
        up = next(r for r in recs if r["layer_type"] == "up_proj" and r["layer"] == 0)
        assert up["transposed"] is True and up["shape"] == [4 * cfg.hidden_size, cfg.hidden_size]


@pytest.mark.parametrize("family", [f for f, v in FAMILIES.items() if v[2]])
def test_moe_experts_indexed_with_a_per_expert_table(runs, family):
    summary, recs, _ = runs[family]
    n_exp = FAMILIES[family][2]
    moe_layers = sorted({r["layer"] for r in recs if r.get("expert") is not None})
    assert moe_layers
    for layer in moe_layers:
        experts = {
            r["expert"] for r in recs if r["layer"] == layer and r.get("expert_kind") == "routed"
        }
        assert experts == set(range(n_exp))
        types = {r["layer_type"] for r in recs if r["layer"] == layer and r.get("expert") == 0}
        assert types == {"gate_proj", "up_proj", "down_proj"}
        assert any(r["layer_type"] == "router" and r["layer"] == layer for r in recs)
    table = next(iter(summary["per_tuned"].values()))["by_expert"]
    routed = [row for row in table if row["expert_kind"] == "routed"]
    assert len(routed) == n_exp * len(moe_layers)
    assert all(row["sparsity"] == pytest.approx(0.7, abs=0.02) for row in routed)
    if family in ("qwen2_moe", "deepseek_v2", "deepseek_v3"):
        assert any(row["expert_kind"] == "shared" for row in table)


def _reference_parts(family: str, model) -> dict[str, dict[str, np.ndarray]]:
    """q/k/v cut from each fused matrix as the model's forward reads its output (float32 torch)."""
    cfg = model.config
    nh = cfg.num_attention_heads
    d = cfg.hidden_size // nh
    out = {}
    sd = {k: v.float() for k, v in model.state_dict().items()}
    for name, w in sd.items():
        if family == "phi3" and name.endswith("qkv_proj.weight"):
            q = nh * d
            kv = cfg.num_key_value_heads * d
            out[name] = dict(q=w[:q], k=w[q : q + kv], v=w[q + kv :])
        elif family == "phi3" and name.endswith("gate_up_proj.weight"):
            gate, up = w.chunk(2, dim=0)  # Phi3MLP: gate, up = gate_up_proj(x).chunk(2, dim=-1)
            out[name] = dict(gate=gate, up=up)
        elif family == "gpt2" and name.endswith("c_attn.weight"):
            q, k, v = w.T.split(
                cfg.hidden_size, dim=0
            )  # GPT2Attention: c_attn(x).split(split_size, dim=2)
            out[name] = dict(q=q, k=k, v=v)
        elif family == "gpt_neox" and name.endswith("query_key_value.weight"):
            q, k, v = w.view(nh, 3 * d, -1).chunk(
                3, dim=1
            )  # view(..., -1, 3*head_size).chunk(3, dim=-1)
            out[name] = {p: t.reshape(nh * d, -1) for p, t in zip("qkv", (q, k, v), strict=True)}
        elif family.startswith("falcon") and name.endswith("query_key_value.weight"):
            if cfg.new_decoder_architecture:  # FalconAttention._split_heads
                g = nh // cfg.num_kv_heads
                x = w.view(cfg.num_kv_heads, g + 2, d, -1)
                q, k, v = x[:, :-2], x[:, -2], x[:, -1]
            elif cfg.multi_query:
                x = w.view(nh + 2, d, -1)
                q, k, v = x[:-2], x[-2], x[-1]
            else:
                x = w.view(nh, 3, d, -1)
                q, k, v = x[:, 0], x[:, 1], x[:, 2]
            out[name] = {
                p: t.reshape(-1, w.shape[-1]) for p, t in zip("qkv", (q, k, v), strict=True)
            }
    return {n: {p: t.numpy() for p, t in parts.items()} for n, parts in out.items()}


@pytest.mark.parametrize("family", sorted(FUSED))
def test_split_matches_the_forward_and_the_unfused_comparison(models, family, tmp_path):
    """Planted: the parts of a fused matrix saved as separate tensors give the same records."""
    model, base, tuned = models[family]
    ref = _reference_parts(family, model)
    assert ref
    arch = Architecture.from_config(*read_config(base))
    cut = {}
    for which, folder in (("base", base), ("tuned", tuned)):
        with open_checkpoint(folder) as c:
            stored = {n: c.load(n) for n in ref}
        if which == "base":  # our views equal the forward's parts, value for value
            for n, parts in ref.items():
                for v in arch.views(n, stored[n].shape):
                    np.testing.assert_array_equal(
                        v.take(stored[n]).astype(np.float32), parts[v.part]
                    )
        parts = {}
        for n, w in stored.items():
            for v in arch.views(n, w.shape):
                parts[f"{n.removesuffix('.weight')}_{v.part}.weight"] = v.take(w)
        (tmp_path / which).mkdir()
        save_safetensors(parts, tmp_path / which / "model.safetensors")
        cut[which] = tmp_path / which
    fused_out, plain_out = tmp_path / "fused", tmp_path / "plain"
    names = "|".join(n.replace(".", r"\.") for n in ref)
    run_compare(CompareConfig(str(base), (str(tuned),), str(fused_out), k=4, include=names))
    run_compare(CompareConfig(str(cut["base"]), (str(cut["tuned"]),), str(plain_out), k=4))
    fused = {r["name"]: r for r in read_jsonl(fused_out / "tensors.jsonl")}
    plain = {r["name"]: r for r in read_jsonl(plain_out / "tensors.jsonl")}
    assert len(fused) == len(plain) > 0
    skip = {
        "name",
        "tuned",
        "layer_type",
        "tensor",
        "part",
        "transposed",
        "expert",
        "expert_kind",
        "layer",
    }
    for n in ref:
        for part in ref[n]:
            a = fused[f"{n}[{part}]"]
            b = plain[f"{n.removesuffix('.weight')}_{part}.weight"]
            assert a["changed"] > 0 and a["max_angle_u_deg"] is not None
            assert {k: v for k, v in a.items() if k not in skip} == {
                k: v for k, v in b.items() if k not in skip
            }


def test_untyped_matrix_measured_warned_once_and_counted(tmp_path, capsys):
    rng = np.random.default_rng(3)
    w = {
        "model.layers.0.self_attn.q_proj.weight": (rng.standard_normal((8, 8)) * 0.1).astype(BF16),
        "model.layers.0.mystery.weight": (rng.standard_normal((8, 4)) * 0.1).astype(BF16),
        "model.layers.1.mystery.weight": (rng.standard_normal((8, 4)) * 0.1).astype(BF16),
    }
    save_safetensors(w, tmp_path / "base.safetensors")
    save_safetensors({n: _moved(a, rng) for n, a in w.items()}, tmp_path / "tuned.safetensors")
    rc = main(
        [
            "compare",
            str(tmp_path / "base.safetensors"),
            str(tmp_path / "tuned.safetensors"),
            "--out",
            str(tmp_path / "o"),
            "--no-figures",
            "--no-spectral",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    lines = [x for x in err.splitlines() if "typed other" in x]
    assert (
        len(lines) == 1
        and "2 tensor(s)" in lines[0]
        and "model.layers.1.mystery.weight" in lines[0]
    )
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    per = next(iter(s["per_tuned"].values()))
    assert per["numel_linear"] == 64 and per["numel_all_matrices"] == 64 + 64
    assert per["all_matrices"]["tensors"] == 3


def test_dtype_mismatch_and_integer_tensors_get_their_own_warning(tmp_path, capsys):
    from safetensors.torch import save_file

    w = torch.randn(8, 8) * 0.1
    ids = torch.arange(8)
    name = "model.layers.0.mlp.up_proj.weight"
    save_file({name: w.bfloat16(), "position_ids": ids}, str(tmp_path / "b.safetensors"))
    save_file({name: w.bfloat16().float(), "position_ids": ids}, str(tmp_path / "t.safetensors"))
    rc = main(
        [
            "compare",
            str(tmp_path / "b.safetensors"),
            str(tmp_path / "t.safetensors"),
            "--out",
            str(tmp_path / "o"),
            "--no-figures",
            "--no-spectral",
        ]
    )
    err = capsys.readouterr().err.splitlines()
    assert rc == 0
    assert sum("different dtypes" in x and "equal values" in x for x in err) == 1
    assert sum("integer/bool" in x and "position_ids" in x for x in err) == 1
    assert any(
        x.count("1 integer/bool") for x in err
    )  # one tensor, though both checkpoints hold it
    assert not [x for x in err if "missing" in x]
    rec = read_jsonl(tmp_path / "o" / "tensors.jsonl")[0]
    assert rec["changed"] == 0 and rec["changed_rule"] == "value"  # equal values: unchanged


def test_multimodal_language_model_typed_vision_tower_apart(tmp_path):
    text = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=300,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    torch.manual_seed(0)
    cfg = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    transformers.Gemma3ForConditionalGeneration(cfg).to(torch.bfloat16).save_pretrained(
        tmp_path / "base"
    )
    (tmp_path / "tuned").mkdir()
    _save_tuned(tmp_path / "base", tmp_path / "tuned", np.random.default_rng(0))
    run_compare(
        CompareConfig(
            str(tmp_path / "base"), (str(tmp_path / "tuned"),), str(tmp_path / "o"), spectral=False
        )
    )
    summary = summarize(tmp_path / "o")
    recs = read_jsonl(tmp_path / "o" / "tensors.jsonl")
    lm = [
        r
        for r in recs
        if "language_model." in r["name"] and len(r["shape"]) == 2 and r["layer"] is not None
    ]
    per = next(iter(summary["per_tuned"].values()))
    assert per["numel_linear"] == sum(r["numel"] for r in lm) > 0
    assert {r["layer_type"] for r in lm} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    vis = [r for r in recs if "vision_tower." in r["name"] or "multi_modal_projector." in r["name"]]
    assert vis and all(r["layer_type"] == "vision" and r["layer"] is None for r in vis)
    assert not [r["name"] for r in recs if r["layer_type"] == "other"]
    assert sum("typed vision" in w for w in summary["warnings"]) == 1


def test_stacked_expert_tensors_split_per_expert_and_part():
    """A stacked `[E, 2I, H]` gate_up_proj and `[E, H, I]` down_proj: one view per expert (and part)."""
    arch = Architecture.from_config(
        {"model_type": "qwen3_moe", "num_attention_heads": 4, "hidden_size": 8}
    )
    e, i, h = 3, 5, 8
    w = np.arange(e * 2 * i * h, dtype=np.float32).reshape(e, 2 * i, h)
    views = arch.views("model.layers.2.mlp.experts.gate_up_proj", w.shape)
    assert [(v.expert, v.layer_type) for v in views] == [
        (x, t) for x in range(e) for t in ("gate_proj", "up_proj")
    ]
    for v in views:
        ref = w[v.expert, :i] if v.part == "gate" else w[v.expert, i:]
        np.testing.assert_array_equal(v.take(w), ref)
        assert v.shape(w.shape) == ref.shape and v.layer == 2
    down = arch.views("model.layers.2.mlp.experts.down_proj", (e, h, i))
    assert [v.layer_type for v in down] == ["down_proj"] * e
