"""SmolLM2-135M-Instruct (Q4_1 GGUF) in the JAX Llama: float64 reference agreement, English loss, tokenizer, CLI."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _lm_reference import reference_logits

from threegate._numerics import tol
from threegate.cli import main
from threegate.cli.lm import _windows
from threegate.lm.config import LlamaConfig
from threegate.lm.model import forward, init_params
from threegate.lm.tokenizer import SMOLLM2_SYSTEM_PROMPT

ENGLISH = Path(__file__).parent / "data" / "english.txt"

# one worker runs the SmolLM2 tests one after another: each holds GBs of memory
pytestmark = [pytest.mark.xdist_group("smollm2")]  # in `make test`: the real model's fast checks


@pytest.fixture(scope="module")
def smollm2():
    from threegate.lm.smollm2 import load_smollm2

    return load_smollm2()


@pytest.fixture(scope="module")
def english_logits(smollm2):
    cfg, params, tok = smollm2
    ids = np.asarray([tok.encode(ENGLISH.read_text(encoding="utf-8"))], np.int32)
    return ids, np.asarray(forward(params, cfg, ids))


def test_config_is_smollm2_135m(smollm2):
    cfg, params, tok = smollm2
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (
        30,
        576,
        9,
        3,
        64,
    )
    assert (cfg.d_ff, cfg.vocab_size, cfg.rope_theta, cfg.tie_embeddings) == (
        1536,
        49152,
        1e5,
        True,
    )
    assert sum(int(np.prod(v.shape)) for v in params.values()) == 134_515_008
    assert tok.vocab_size == cfg.vocab_size and tok.eos_id == 2


def test_forward_matches_float64_reference(smollm2, english_logits):
    """The first 8 positions of the full-text forward (causal) against the float64 NumPy model on 8 tokens."""
    cfg, params, _ = smollm2
    ids, logits = english_logits
    want = reference_logits(params, cfg, ids[:, :8])
    err = np.abs(logits[:, :8] - want).max() / np.abs(want).max()
    # Rounding of f32 sums of width d is ~sqrt(d)·eps relative; allow d·eps of the largest logit (c = 1:
    # 576·1.2e-7 ≈ 6.9e-5; measured 2.2e-6 on a 2-core CPU).
    assert err <= tol(jnp.float32, cfg.d_model, c=1.0), err
    assert np.array_equal(logits[0, :8].argmax(-1), want[0].argmax(-1))


def test_loss_on_plain_english_is_plausible(english_logits):
    ids, logits = english_logits
    z = logits[0, :-1].astype(np.float64)
    lse = z.max(-1) + np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1))
    nats = float(np.mean(lse - z[np.arange(z.shape[0]), ids[0, 1:]]))
    assert 1.5 < nats < 3.2, nats


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, world!",
        " leading and  double  spaces\n\ttabs\r\n",
        "Ünïcödé: naïve café, 日本語のテキスト, emoji 🙂👍🏽, math ∑ x² ≤ ∞",
        "12345 + 678 = 7023",
        "<|im_start|>user\nHi<|im_end|>\n",
        "def f(x):\n    return x ** 2  # comment\n",
    ],
)
def test_tokenizer_round_trips(smollm2, text):
    tok = smollm2[2]
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_tokenizer_splits_digits_and_knows_words(smollm2):
    tok = smollm2[2]
    assert [tok.decode([i]) for i in tok.encode("12345")] == list("12345")
    assert [tok.decode([i]) for i in tok.encode(" hello world")] == [" hello", " world"]
    assert tok.encode("<|im_start|>") == [1] and tok.encode("<|im_end|>") == [2]
    assert tok.decode(tok.encode("<|im_end|>ok"), skip_special=True) == "ok"


def test_chat_template_is_chatml_with_default_system(smollm2):
    tok = smollm2[2]
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}])
    assert text == (
        f"<|im_start|>system\n{SMOLLM2_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(own, add_generation_prompt=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    )
    with pytest.raises(ValueError, match="role"):
        tok.apply_chat_template([{"content": "no role"}])


def test_windows_score_every_token_once():
    ids = list(range(10))
    for context, stride in [(4, 1), (4, 2), (4, 3), (20, 20)]:
        scored = []
        for w, n in _windows(ids, context, stride):
            assert len(w) <= context and n <= len(w) - 1
            scored += w[len(w) - n :]
        assert scored == ids[1:]
    blocks = list(_windows(ids, 4, 4))  # disjoint blocks skip each block's first token
    assert [n for _, n in blocks] == [3, 3, 2]


def test_cli_on_a_checkpoint_folder(smollm2, tmp_path, capsys):
    from safetensors.numpy import save_file

    tok = smollm2[2]
    cfg = LlamaConfig.tiny(
        tok.vocab_size, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, max_seq_len=64
    )
    params = init_params(cfg, jax.random.key(0), dtype=jnp.bfloat16)
    save_file({k: np.asarray(v) for k, v in params.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(cfg.to_json())
    tok.hf.save(str(tmp_path / "tokenizer.json"))
    assert main(["lm-loss", "--model", str(tmp_path), "--context", "64", str(ENGLISH)]) == 0
    record = json.loads(capsys.readouterr().out)
    # An untrained model is near uniform: loss ≈ log V.
    assert abs(record["nats_per_token"] - np.log(cfg.vocab_size)) < 0.1
    assert record["tokens"] > 500
    assert main(["lm-loss", "--model", str(tmp_path / "nope"), str(ENGLISH)]) == 2
