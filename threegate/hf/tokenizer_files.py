"""The tokenizer files of a Hugging Face model folder, from a `threegate.lm.tokenizer.Tokenizer`.

`tokenizer.json` is the `tokenizers` pipeline itself (vocabulary, merges, pre-tokenizer, decoder, special
tokens), so `tokenizers.Tokenizer.from_file` and `AutoTokenizer` encode exactly as our `Tokenizer.encode` does.
`tokenizer_config.json` names the special tokens, holds the chat template (Jinja, as the GGUF stores it) and
asks for the generic fast tokenizer class (`PreTrainedTokenizerFast`), which keeps `tokenizer.json`'s pipeline
as written; `special_tokens_map.json` repeats the special tokens for older readers.

`char_tokenizer` builds the 16-symbol character vocabulary of the lab's `CharTask` (`threegate.lm.tasks`) as a
`tokenizers` word-level model, so a from-scratch lab model exports with a tokenizer too: `"12+34="` encodes to
`CharTask.prompts`' ids (BOS, then one id per character).
"""

import json
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as _HFTokenizer

from threegate.lm.tokenizer import Tokenizer

__all__ = ["CHAR_SPECIALS", "char_tokenizer", "tokenizer_files"]

#: Texts of the char vocabulary's PAD, BOS and EOS ids (0, 1, 2).
CHAR_SPECIALS = ("<pad>", "<s>", "</s>")


def char_tokenizer() -> Tokenizer:
    """The lab's character vocabulary (`CHAR_VOCAB` ids) as a `Tokenizer`: one token per character.

    Digits, `+`, `=`, `%` are ordinary tokens; PAD, BOS, EOS are the special tokens `CHAR_SPECIALS`.
    Whitespace is dropped; `add_special_tokens=True` (the Hugging Face default) prepends BOS, as `CharTask`
    prompts begin with it.
    """
    from threegate.lm.tasks import BOS, CHAR_VOCAB, EOS, PAD, decode_chars

    specials = dict(zip((PAD, BOS, EOS), CHAR_SPECIALS, strict=True))
    vocab = {specials.get(i, decode_chars(i)): i for i in range(CHAR_VOCAB)}
    hf = _HFTokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHAR_SPECIALS])
    bos = specials[BOS]
    hf.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, BOS)]
    )
    return Tokenizer(hf, bos_id=BOS, eos_id=EOS, pad_id=PAD)


def _text(tok: Tokenizer, i: int | None) -> str | None:
    return None if i is None else tok.hf.id_to_token(int(i))


def tokenizer_files(
    tok: Tokenizer,
    *,
    chat_template: str | None,
    model_max_length: int,
    unk_id: int | None = None,
    add_bos: bool = False,
) -> dict[str, str]:
    """File name → text of `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json`.

    Args:
      tok: the tokenizer (its `hf` pipeline is written as is).
      chat_template: Jinja chat template (None: the folder has none).
      model_max_length: the longest input the model takes (its `max_position_embeddings`).
      unk_id: id of the unknown token, if the vocabulary names one.
      add_bos: whether encoding with special tokens prepends BOS (`tok`'s post-processor must agree).
    """
    special = {
        "bos_token": _text(tok, tok.bos_id),
        "eos_token": _text(tok, tok.eos_id),
        "pad_token": _text(tok, tok.pad_id),
        "unk_token": _text(tok, unk_id),
    }
    special = {k: v for k, v in special.items() if v is not None}
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    return {
        "tokenizer.json": tok.hf.to_str(pretty=True),
        "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False),
        "special_tokens_map.json": json.dumps(special, indent=2, ensure_ascii=False),
    }
