"""`threegate export-hf`: bf16 rounding, config round trip, lab checkpoints bit for bit, CLI errors, and a
cross-check of our model and tokenizer against `transformers` on the exported SmolLM2 folder.

The transformers/torch tests skip (with the reason) when the `hf` extra is not installed; the rest needs only
the base install. torch runs on one thread, offline.
"""

import json
import math

import jax
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from threegate.checkpoints import open_checkpoint
from threegate.cli import main
from threegate.hf import export_hf, hf_config, llama_config_from_hf, to_bf16
from threegate.hf.config import SpecialIds
from threegate.lm.checkpoint import save_checkpoint
from threegate.lm.config import LlamaConfig
from threegate.lm.model import forward, init_params
from threegate.lm.tasks import CHAR_VOCAB, CharTask

BF16 = np.dtype(ml_dtypes.bfloat16)
BF16_MAX = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
#: Issue 10's acceptance bound: max |logit difference| / max |logit|, float32 on both sides.
LOGIT_RTOL = 1e-4
#: Digits, punctuation, accents, CJK and an emoji (the tokenizers must agree on all of them).
PARAGRAPH = (
    "In 2024, the café on Müllerstraße sold 1,337 croissants at €3.50 each (about 12% more than in "
    "2023!). Naïve question: is 7*8=56? Yes; and 中文也可以。 Emoji too 🙂👍 — “quotes”, tabs\tand\nnewlines."
)
CHATS = [
    [{"role": "user", "content": "What is 23+45? Answer:"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi é 中文 🙂"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
    ],
]


# ---------------------------------------------------------------------------------------------- rounding


def _reference_bf16(x: float) -> np.ndarray:
    """float64 reference: round |x| on its binade's bf16 grid $2^{E-7}$ ($E \\ge -126$) with NumPy's
    half-to-even `round` (the scaling by a power of two is exact), then overflow to inf."""
    if not math.isfinite(x) or x == 0.0:
        return np.asarray(x).astype(BF16)
    _, e = math.frexp(abs(x))  # |x| in [2^(e-1), 2^e)
    q = 2.0 ** (max(e - 1, -126) - 7)
    r = float(np.round(abs(x) / q)) * q
    r = math.inf if r > BF16_MAX else r
    return np.asarray(math.copysign(r, x)).astype(BF16)  # exact: r is on the bf16 grid


def _bits(a) -> np.ndarray:
    return np.asarray(a, BF16).view(np.uint16)


@st.composite
def near_ties(draw) -> float:
    """A bf16 value plus half its spacing, nudged by ±2⁻ʲ spacings: where double rounding goes wrong."""
    u = draw(st.integers(0, 0x7F7F))  # finite positive bf16 codes
    b = float(np.asarray(u, np.uint16).view(BF16))
    spacing = float(np.spacing(np.asarray(b, BF16)))
    nudge = draw(st.sampled_from([-1.0, 0.0, 1.0])) * 2.0 ** -draw(st.integers(10, 44))
    sign = draw(st.sampled_from([-1.0, 1.0]))
    return sign * (b + (0.5 + nudge) * spacing)


@given(st.one_of(st.floats(allow_nan=False, width=64), near_ties()))
def test_to_bf16_float64_is_rounded_once(x):
    assert _bits(to_bf16(np.asarray([x]))) == _bits(_reference_bf16(x))


def test_to_bf16_planted_double_rounding_case():
    """1 + 2⁻⁸ + 2⁻⁴⁰ is just above the tie between 1 and 1 + 2⁻⁷: correct rounding goes up; rounding to
    float32 first lands on the tie exactly and then goes to the even neighbour 1."""
    x = np.asarray([1 + 2.0**-8 + 2.0**-40, -(1 + 2.0**-8 + 2.0**-40), 1 + 2.0**-8])
    assert to_bf16(x).astype(np.float64).tolist() == [1 + 2.0**-7, -(1 + 2.0**-7), 1.0]
    assert x.astype(np.float32).astype(BF16)[0] == 1.0  # the naive route is wrong here


@given(st.floats(allow_nan=False, width=32))
def test_to_bf16_float32_matches_reference(x):
    assert _bits(to_bf16(np.asarray([x], np.float32))) == _bits(_reference_bf16(x))


def test_to_bf16_special_values_and_bf16_identity():
    x = np.asarray([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 5e-324])
    y = to_bf16(x).astype(np.float64)
    assert np.isnan(y[0]) and y[1:3].tolist() == [np.inf, -np.inf]
    assert np.signbit(y[3:5]).tolist() == [False, True] and y[3:5].tolist() == [0.0, 0.0]
    assert y[5:7].tolist() == [np.inf, -np.inf] and y[7] == 0.0
    codes = np.arange(2**16, dtype=np.uint16).view(BF16)  # every bf16 value, NaNs included
    assert to_bf16(codes).view(np.uint16).tobytes() == codes.view(np.uint16).tobytes()
    with pytest.raises(TypeError, match="float"):
        to_bf16(np.arange(3))


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "cfg",
    [
        LlamaConfig.tiny(CHAR_VOCAB, max_seq_len=32),
        LlamaConfig(49152, 576, 30, 9, 3, 64, 1536, 1e5, 1e-5, True, 8192),
        LlamaConfig(1000, 96, 3, 6, 2, 24, 200, 5e5, 1e-6, False, 4096),
    ],
)
def test_hf_config_round_trips(cfg):
    ids = SpecialIds(1, 2, 0)
    data = json.loads(json.dumps(hf_config(cfg, ids)))
    assert llama_config_from_hf(data) == cfg
    assert (data["bos_token_id"], data["eos_token_id"], data["pad_token_id"]) == (1, 2, 0)
    assert data["rope_parameters"]["rope_theta"] == data["rope_theta"] == cfg.rope_theta
    assert data["torch_dtype"] == "bfloat16" and data["architectures"] == ["LlamaForCausalLM"]


def test_llama_config_from_hf_refuses_what_our_model_lacks():
    data = hf_config(LlamaConfig.tiny(CHAR_VOCAB), SpecialIds(1, 2, 0))
    for bad in ({"attention_bias": True}, {"rope_scaling": {"type": "linear", "factor": 2.0}}):
        with pytest.raises(ValueError, match="lacks"):
            llama_config_from_hf(data | bad)
    with pytest.raises(ValueError, match="not a Hugging Face Llama"):
        llama_config_from_hf(data | {"model_type": "qwen2"})


# ---------------------------------------------------------------------------------------------- lab checkpoints

TINY = LlamaConfig.tiny(CHAR_VOCAB, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)


@pytest.fixture(scope="module")
def lab_ckpt(tmp_path_factory):
    """A tiny lab checkpoint in bf16 (as training writes it) and the same weights in float32."""
    root = tmp_path_factory.mktemp("lab")
    params = init_params(TINY, jax.random.key(3))
    save_checkpoint(root / "run" / "step_000000", params, TINY)
    save_checkpoint(root / "f32", params, TINY, dtype=np.float32)
    return root


def _tensors(folder) -> dict[str, np.ndarray]:
    with open_checkpoint(folder) as c:
        return {n: c.load(n) for n in c.names()}


def test_lab_checkpoint_round_trips_bit_for_bit(lab_ckpt, tmp_path):
    src = lab_ckpt / "run" / "step_000000"
    res = export_hf(src, tmp_path / "hf")
    assert (res.n_tensors, res.n_copied, res.n_rounded, res.tokenizer) == (20, 20, 0, "char")
    before, after = _tensors(src), _tensors(tmp_path / "hf")
    assert sorted(before) == sorted(after)
    for name, w in before.items():
        assert after[name].dtype == BF16
        assert after[name].view(np.uint16).tobytes() == w.view(np.uint16).tobytes(), name
    data = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert llama_config_from_hf(data) == TINY
    assert (data["bos_token_id"], data["eos_token_id"], data["pad_token_id"]) == (1, 2, 0)
    assert set(res.files) == {p.name for p in (tmp_path / "hf").iterdir()}


def test_float32_checkpoint_is_rounded_once_and_export_is_deterministic(lab_ckpt, tmp_path):
    res = export_hf(lab_ckpt / "f32", tmp_path / "a")
    assert (res.n_copied, res.n_rounded) == (0, 20)
    f32, out = _tensors(lab_ckpt / "f32"), _tensors(tmp_path / "a")
    for name, w in f32.items():
        assert w.dtype == np.float32
        want = np.vectorize(lambda v: _reference_bf16(float(v)).view(np.uint16))(w.ravel())
        assert np.array_equal(out[name].view(np.uint16).ravel(), want.astype(np.uint16)), name
    # Exporting again (over the old folder) writes the same bytes: nothing drifts between exports.
    export_hf(lab_ckpt / "f32", tmp_path / "a", force=True)
    export_hf(lab_ckpt / "f32", tmp_path / "b")
    for f in res.files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_char_tokenizer_file_encodes_as_char_task(lab_ckpt, tmp_path):
    from tokenizers import Tokenizer

    export_hf(lab_ckpt / "run" / "step_000000", tmp_path / "hf")
    tok = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    task = CharTask("addition", n_digits=2)
    problems = task.sample(jax.random.key(0), 4)
    want, _ = task.prompts(problems)
    for a, b, row in zip(problems.a.tolist(), problems.b.tolist(), np.asarray(want), strict=True):
        assert tok.encode(f"{a:02d}+{b:02d}=").ids == row.tolist()
    assert tok.decode([3, 4, 13, 5, 14], skip_special_tokens=True) == "01+2="


# ---------------------------------------------------------------------------------------------- CLI errors


def _error(capsys, argv) -> str:
    rc = main(["export-hf", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("threegate export-hf: error: ")
    return err


def test_cli_writes_a_folder(lab_ckpt, tmp_path, capsys):
    assert main(["export-hf", str(lab_ckpt / "run" / "step_000000"), str(tmp_path / "o")]) == 0
    assert "20 bf16 tensors (0 rounded once, 20 copied bit for bit)" in capsys.readouterr().out


def test_cli_error_paths(lab_ckpt, tmp_path, capsys):
    ckpt = str(lab_ckpt / "run" / "step_000000")
    assert "no such file" in _error(capsys, [str(tmp_path / "missing"), str(tmp_path / "o")])
    err = _error(capsys, [str(lab_ckpt / "run"), str(tmp_path / "o")])
    assert "not a threegate checkpoint" in err and "step_000000" in err
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a checkpoint" in _error(capsys, [str(tmp_path / "notes.txt"), str(tmp_path / "o")])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert "--force" in _error(capsys, [ckpt, str(busy)])
    assert main(["export-hf", ckpt, str(busy), "--force"]) == 0
    assert (busy / "keep.txt").read_text() == "x"  # --force replaces only the export's own files
    capsys.readouterr()
    assert "already a Hugging Face folder" in _error(capsys, [str(busy), str(tmp_path / "o2")])
    assert "source folder" in _error(capsys, [ckpt, ckpt, "--force"])
    assert "not a GGUF file" in _error(capsys, [ckpt, str(tmp_path / "o3"), "--tokenizer", "gguf"])
    err = _error(capsys, [ckpt, str(tmp_path / "o4"), "--tokenizer", "smollm2"])
    assert "tokenizer has 49152 ids, the model 16" in err


def test_cli_refuses_a_checkpoint_that_disagrees_with_its_config(lab_ckpt, tmp_path, capsys):
    bad = tmp_path / "bad"
    params = _tensors(lab_ckpt / "run" / "step_000000")
    save_checkpoint(bad, params, TINY)
    wrong = TINY.__class__(**(TINY.to_dict() | {"d_ff": TINY.d_ff * 2}))
    (bad / "config.json").write_text(wrong.to_json())
    assert "config says" in _error(capsys, [str(bad), str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # nothing written on a bad source
    save_checkpoint(bad, params | {"extra.weight": np.zeros(3, BF16)}, TINY)
    assert "a Llama has not" in _error(capsys, [str(bad), str(tmp_path / "o")])


# ---------------------------------------------------------------------------------------------- SmolLM2 vs transformers


@pytest.fixture(scope="module")
def smollm2_hf(tmp_path_factory):
    """SmolLM2-135M-Instruct exported from its GGUF (bf16), and our tokenizer built from the same GGUF."""
    from threegate.checkpoints.gguf import GGUFCheckpoint, smollm2_gguf_path
    from threegate.lm.tokenizer import Tokenizer

    out = tmp_path_factory.mktemp("smollm2") / "hf"
    res = export_hf("smollm2", out)
    with GGUFCheckpoint(smollm2_gguf_path()) as ckpt:
        ours = Tokenizer.from_gguf_spec(ckpt.tokenizer_spec)
    return out, res, ours


@pytest.fixture
def offline(monkeypatch):
    """transformers on one thread, with no hub access."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch = pytest.importorskip("torch", reason="needs the hf extra (pip install threegate[hf])")
    transformers = pytest.importorskip("transformers", reason="needs the hf extra")
    torch.set_num_threads(1)
    return torch, transformers


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_smollm2_export_rounds_the_gguf_weights_once(smollm2_hf):
    from threegate.checkpoints.gguf import GGUFCheckpoint, smollm2_gguf_path

    out, res, _ = smollm2_hf
    assert (res.n_tensors, res.n_rounded, res.tokenizer) == (272, 272, "gguf")
    names = [
        "model.layers.7.post_attention_layernorm.weight",
        "model.layers.7.self_attn.k_proj.weight",
    ]
    with GGUFCheckpoint(smollm2_gguf_path()) as src, open_checkpoint(out) as dst:
        for name in names:
            w = src.load(name)
            assert w.dtype == np.float32
            assert np.array_equal(dst.load(name).view(np.uint16), w.astype(BF16).view(np.uint16))
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["head_dim"], cfg["num_key_value_heads"]) == (30, 64, 3)
    assert (cfg["rope_theta"], cfg["rms_norm_eps"], cfg["tie_word_embeddings"]) == (1e5, 1e-5, True)
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["max_position_embeddings"]) == (
        1,
        2,
        8192,
    )


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_smollm2_tokenizer_json_encodes_as_ours(smollm2_hf):
    from tokenizers import Tokenizer

    out, _, ours = smollm2_hf
    theirs = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = ours.encode(PARAGRAPH)
    assert theirs.encode(PARAGRAPH, add_special_tokens=False).ids == ids
    assert theirs.decode(ids) == PARAGRAPH == ours.decode(ids)
    chat = ours.apply_chat_template(CHATS[0])
    assert theirs.encode(chat, add_special_tokens=False).ids == ours.encode(chat)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_smollm2_auto_tokenizer_and_chat_template_agree(smollm2_hf, offline):
    _, transformers = offline
    out, _, ours = smollm2_hf
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    assert theirs(PARAGRAPH)["input_ids"] == ours.encode(PARAGRAPH)  # no BOS added, as ours
    assert (theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id) == (1, 2, 2)
    for chat in CHATS:
        for gen in (True, False):
            text = theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen)
            assert text == ours.apply_chat_template(chat, add_generation_prompt=gen)


def _max_rel_diff(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(ours)))


# in `make test`: our log-probs against transformers' on the real model
@pytest.mark.xdist_group("smollm2")
def test_smollm2_transformers_logits_match_ours(smollm2_hf, offline):
    """Same bf16 weights (the exported file), float32 arithmetic on both sides: next-token log-probabilities
    agree to LOGIT_RTOL of the largest logit; a one-token shift of the input (a wrong answer) does not."""
    torch, transformers = offline
    out, _, ours = smollm2_hf
    ids = np.asarray([ours.encode(PARAGRAPH)[:10]], np.int32)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        theirs = model(torch.from_numpy(ids.astype(np.int64))).logits.numpy()
    cfg = llama_config_from_hf(json.loads((out / "config.json").read_text()))
    params = {n: jax.numpy.asarray(w) for n, w in _tensors(out).items()}
    logits = np.asarray(forward(params, cfg, ids))
    lp_ours = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    lp_theirs = np.asarray(torch.log_softmax(torch.from_numpy(theirs), dim=-1))
    scale = np.max(np.abs(logits))
    assert np.max(np.abs(lp_ours - lp_theirs)) / scale <= LOGIT_RTOL
    assert _max_rel_diff(logits, theirs) <= LOGIT_RTOL
    assert _max_rel_diff(logits[:, 1:], theirs[:, :-1]) > 100 * LOGIT_RTOL  # the check can fail


@pytest.mark.slow
def test_lab_checkpoint_loads_in_transformers_with_the_same_bits_and_logits(
    lab_ckpt, tmp_path, offline
):
    torch, transformers = offline
    export_hf(lab_ckpt / "run" / "step_000000", tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.bfloat16)
    ours = _tensors(lab_ckpt / "run" / "step_000000")
    state = model.state_dict()
    for name, w in ours.items():
        got = state[name].contiguous().view(torch.int16).numpy().view(np.uint16)
        assert np.array_equal(got, w.view(np.uint16)), name
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    task = CharTask("addition", n_digits=2)
    problems = task.sample(jax.random.key(1), 3)
    prompts, _ = task.prompts(problems)
    text = [
        f"{a:02d}+{b:02d}=" for a, b in zip(problems.a.tolist(), problems.b.tolist(), strict=True)
    ]
    ids = tok(text)["input_ids"]
    assert ids == np.asarray(prompts).tolist()  # BOS, then one id per character
    model32 = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf", dtype=torch.float32
    )
    with torch.no_grad():
        theirs = model32(torch.tensor(ids)).logits.numpy()
    logits = np.asarray(forward({n: jax.numpy.asarray(w) for n, w in ours.items()}, TINY, prompts))
    assert _max_rel_diff(logits, theirs) <= LOGIT_RTOL
