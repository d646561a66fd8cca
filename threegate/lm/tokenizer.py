"""Byte-level BPE tokenizer (GPT-2 style) built from a GGUF vocabulary with the `tokenizers` package.

SmolLM2's pre-tokenizer ("smollm" in llama.cpp, `Digits(individual_digits=True)` followed by GPT-2's ByteLevel
regex in its Hugging Face `tokenizer.json`) splits every digit into its own piece, so numbers tokenize digit by
digit. Control tokens (GGUF token type 3, e.g. `<|im_start|>`) are added as special tokens: they are matched
whole in the input text and never split.
"""

import os
from typing import Any

from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as _HFTokenizer

__all__ = ["SMOLLM2_SYSTEM_PROMPT", "Tokenizer"]

#: The system message SmolLM2-Instruct's chat template inserts when the conversation has none.
SMOLLM2_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

_CONTROL = 3  # llama.cpp token type of control (special) tokens
_PRE_TOKENIZERS = ("smollm",)  # GGUF `tokenizer.ggml.pre` values this module knows


class Tokenizer:
    """Text ↔ token ids, with ChatML chat formatting.

    Attributes:
      bos_id, eos_id, pad_id: special ids (None where the vocabulary has none); for SmolLM2 `eos_id` is
        `<|im_end|>` (2), which ends a chat turn.
      vocab_size: number of ids.
    """

    def __init__(
        self,
        hf: _HFTokenizer,
        *,
        bos_id: int | None,
        eos_id: int | None,
        pad_id: int | None,
        system_prompt: str | None = None,
    ):
        self.hf = hf
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.system_prompt = system_prompt
        self.vocab_size = hf.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_gguf_spec(cls, spec: Any) -> "Tokenizer":
        """From a `TokenizerSpec` (GGUF metadata): `model` "gpt2", `pre` "smollm"."""
        if spec.model != "gpt2":
            raise ValueError(
                f"only byte-level BPE ('gpt2') tokenizers are supported, got {spec.model!r}"
            )
        if spec.pre not in _PRE_TOKENIZERS:
            raise ValueError(f"unknown pre-tokenizer {spec.pre!r}; known: {list(_PRE_TOKENIZERS)}")
        vocab = {tok: i for i, tok in enumerate(spec.tokens)}
        if len(vocab) != len(spec.tokens):
            raise ValueError("the GGUF vocabulary has duplicate tokens")
        merges = []
        for m in spec.merges:
            left, sep, right = m.partition(" ")
            if not sep:
                raise ValueError(f"malformed merge {m!r}")
            merges.append((left, right))
        hf = _HFTokenizer(
            models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False)
        )
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        hf.decoder = decoders.ByteLevel()
        special = [
            t for t, kind in zip(spec.tokens, spec.token_types, strict=True) if kind == _CONTROL
        ]
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
        template = spec.chat_template or ""
        return cls(
            hf,
            bos_id=spec.bos_id,
            eos_id=spec.eos_id,
            pad_id=spec.pad_id,
            system_prompt=SMOLLM2_SYSTEM_PROMPT if SMOLLM2_SYSTEM_PROMPT in template else None,
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        bos: str | None,
        eos: str | None,
        pad: str | None = None,
    ) -> "Tokenizer":
        """From a Hugging Face `tokenizer.json`, naming the special tokens by their text."""
        hf = _HFTokenizer.from_file(str(path))
        ids = {}
        for role, text in (("bos", bos), ("eos", eos), ("pad", pad)):
            ids[role] = None if text is None else hf.token_to_id(text)
            if text is not None and ids[role] is None:
                raise ValueError(f"{path}: no token {text!r} for {role}")
        return cls(hf, bos_id=ids["bos"], eos_id=ids["eos"], pad_id=ids["pad"])

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS is added: SmolLM2's GGUF sets `add_bos_token` false)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids, *, skip_special: bool = False) -> str:
        """Text of `ids`; `decode(encode(s)) == s` for every string `s` (special tokens kept by default)."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.vocab_size})")
        return self.hf.decode(ids, skip_special_tokens=skip_special)

    def apply_chat_template(
        self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """ChatML text of a conversation, as SmolLM2-Instruct's template renders it.

        Each message becomes `<|im_start|>{role}\\n{content}<|im_end|>\\n`; when the first message is not a system
        message, the model's default system message is prepended; `add_generation_prompt` appends
        `<|im_start|>assistant\\n`.
        """
        if not messages:
            raise ValueError("a chat needs at least one message")
        parts = []
        for j, msg in enumerate(messages):
            if not isinstance(msg, dict) or not {"role", "content"} <= set(msg):
                raise ValueError(f"message {j} must be a dict with 'role' and 'content'")
            if j == 0 and msg["role"] != "system" and self.system_prompt is not None:
                parts.append(f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n")
            parts.append(f"<|im_start|>{msg['role']}\n{msg['content']}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)
