"""A PEFT LoRA adapter folder read as the tuned checkpoint: the base with $\\Delta W = (\\alpha/r)\\,B A$ merged.

A folder with `adapter_config.json` and `adapter_model.safetensors` (as `peft` saves it) is a tuned checkpoint
over a base: `AdapterCheckpoint(folder, base)` has the base's names, shapes and dtypes, and `load(name)` returns
the merged weight as `peft`'s `merge_and_unload` would store it:

* $\\Delta W = s\\,B A$ formed in float32 from the adapter's stored $A$ `[r, in]`, $B$ `[out, r]`, with
  $s = \\alpha/r$ (`lora_alpha`, `alpha_pattern`; $\\alpha/\\sqrt r$ with `use_rslora`), $r$ read from $A$;
  transposed for `fan_in_fan_out` (GPT-2 Conv1D) and for embeddings (`lora_embedding_A/B`);
* rounded to the adapter's dtype when that is bf16/f16 (peft casts the delta back before it adds), then added to
  $W_0$ with one rounding to the base's dtype.

So `compare BASE ADAPTER` gives the merged model's records: its sparsity as stored and its geometry;
`compare` adds to each target's record an `adapter` block, the geometry of the exact float32 $\\Delta W$
(`threegate.compare.metrics.delta_metrics`). `delta(name)` returns that $\\Delta W$ (None for modules the
adapter does not touch).
`modules_to_save` copies replace the base tensors. DoRA and other LoRA variants are refused in one line.
"""

import json
import math
import re
from pathlib import Path
from typing import SupportsIndex

import ml_dtypes
import numpy as np

from threegate.checkpoints.base import Checkpoint, TensorInfo
from threegate.checkpoints.formats import open_checkpoint
from threegate.errors import CheckpointError

__all__ = ["AdapterCheckpoint", "is_adapter", "open_tuned"]

_PREFIX = "base_model.model."
_LORA = re.compile(
    r"^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?(?:\.weight)?$"
)
_SAVE = re.compile(r"^(.*)\.modules_to_save(?:\.[^.]+)?\.(weight|bias)$")


def is_adapter(path: str | Path) -> bool:
    """True for a PEFT adapter folder (it holds `adapter_config.json`)."""
    p = Path(path)
    return p.is_dir() and (p / "adapter_config.json").is_file()


def open_tuned(path: str | Path, base: Checkpoint) -> Checkpoint:
    """A tuned checkpoint: a PEFT adapter folder over `base`, else `open_checkpoint(path)`."""
    return AdapterCheckpoint(path, base) if is_adapter(path) else open_checkpoint(path)


def _pattern_value(patterns: dict, module: str, default):
    """peft's `rank_pattern` / `alpha_pattern` lookup: a key matching the end of the module name."""
    for key, value in patterns.items():
        if re.search(rf"(?:^|\.){key}$", module):
            return value
    return default


class AdapterCheckpoint(Checkpoint):
    """A LoRA adapter merged into `base` lazily, one tensor at a time (see the module docstring).

    Raises (at construction): CheckpointError in one line for a missing or corrupt adapter file, a LoRA
    variant threegate does not merge (DoRA, ...), or a target module the base does not hold.
    """

    def __init__(self, path: str | Path, base: Checkpoint):
        self.path = Path(path)
        self.format = "peft-lora"
        self.base = base
        self.skipped = dict(base.skipped)
        try:
            cfg = json.loads((self.path / "adapter_config.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise CheckpointError(f"{self.path}: adapter_config.json unreadable ({err})") from None
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{self.path}: adapter_config.json is not a JSON object")
        ptype = str(cfg.get("peft_type", "LORA")).upper()
        if ptype != "LORA":
            raise CheckpointError(
                f"{self.path}: peft_type {ptype} is not a LoRA adapter threegate merges"
            )
        if cfg.get("use_dora"):
            raise CheckpointError(
                f"{self.path}: DoRA adapters are not supported (only plain LoRA/PiSSA)"
            )
        self.config = cfg
        self.warnings: list[str] = []
        init = cfg.get("init_lora_weights")
        if isinstance(init, str) and init.lower().startswith(("pissa", "olora", "corda")):
            self.warnings.append(
                f"{self.path.name}: {init} adapter: its A, B were initialised from the base; unless it was "
                "saved with path_initial_model_for_weight_conversion, the merged weights use the residual "
                "base that peft made, not BASE"
            )
        self._adapter = open_checkpoint(self._weights_file())
        self._lora: dict[str, dict[str, str]] = {}
        self._saved: dict[str, str] = {}
        base_names = set(base.names())
        for n in self._adapter.names():
            stripped = n.removeprefix(_PREFIX)
            m = _LORA.match(stripped)
            s = _SAVE.match(stripped)
            if m:
                self._lora.setdefault(m.group(1), {})[m.group(2)] = n
            elif s:
                self._saved[f"{s.group(1)}.{s.group(2)}"] = n
            elif stripped in base_names:
                self._saved[stripped] = n
            else:
                raise CheckpointError(
                    f"{self.path}: adapter tensor {n!r} is not a LoRA factor or a base tensor"
                )
        for module, parts in self._lora.items():
            target = f"{module}.weight"
            if target not in base_names:
                raise CheckpointError(
                    f"{self.path}: adapter targets {target!r}, which the base does not hold"
                )
            if not (
                {"lora_A", "lora_B"} <= parts.keys()
                or {"lora_embedding_A", "lora_embedding_B"} <= parts.keys()
            ):
                raise CheckpointError(
                    f"{self.path}: {module}: needs both LoRA factors, has {sorted(parts)}"
                )
        for target in self._saved:
            if target not in base_names:
                raise CheckpointError(f"{self.path}: modules_to_save {target!r} is not in the base")

    def _weights_file(self) -> Path:
        for name in ("adapter_model.safetensors",):
            if (self.path / name).is_file():
                return self.path / name
        raise CheckpointError(
            f"{self.path}: no adapter_model.safetensors (a .bin adapter must be converted)"
        )

    def names(self) -> list[str]:
        return self.base.names()

    def info(self, name: str) -> TensorInfo:
        return self.base.info(name)

    def targets(self) -> list[str]:
        """Base tensor names the adapter changes (LoRA targets and modules_to_save)."""
        return sorted({f"{m}.weight" for m in self._lora} | set(self._saved))

    def scaling(self, module: str, r: int) -> float:
        """$s = \\alpha/r$ ($\\alpha/\\sqrt r$ with `use_rslora`) for `module`."""
        alpha = _pattern_value(
            self.config.get("alpha_pattern") or {}, module, self.config.get("lora_alpha", 8)
        )
        return float(alpha) / (math.sqrt(r) if self.config.get("use_rslora") else r)

    def _factors(self, name: str):
        module = name.removesuffix(".weight")
        parts = self._lora.get(module) if name.endswith(".weight") else None
        if parts is None:
            return None
        emb = "lora_embedding_A" in parts
        a = self._adapter.load(parts["lora_embedding_A" if emb else "lora_A"])
        b = self._adapter.load(parts["lora_embedding_B" if emb else "lora_B"])
        return a, b, self.scaling(module, a.shape[0]), emb

    def lora_info(self, name: str) -> dict:
        """`{"rank": r, "scaling": s}` of the LoRA on `name` (an empty dict when it has none)."""
        f = self._factors(name)
        return {} if f is None else {"rank": int(f[0].shape[0]), "scaling": f[2]}

    def delta(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray | None:
        """$\\Delta W$ of `name` in float32, in the stored layout (rows `start:stop` if given), or None."""
        f = self._factors(name)
        if f is None:
            return None
        a, b, s, emb = f
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        transpose = emb or bool(self.config.get("fan_in_fan_out"))
        if not transpose:
            prod = b32 if rows is None else b32[rows[0] : rows[1]]
            d = prod @ a32
        else:  # stored [in, out] (or [vocab, dim]): rows of (B A)^T are columns of A
            cols = a32 if rows is None else a32[:, rows[0] : rows[1]]
            d = (b32 @ cols).T
        return d * np.float32(s)

    def _merge(self, w0: np.ndarray, d: np.ndarray) -> np.ndarray:
        adapter_dtype = self._adapter.info(next(iter(self._adapter.names()))).dtype
        if adapter_dtype in (np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)):
            d = d.astype(adapter_dtype).astype(np.float32)  # peft casts the delta back first
        wide = np.float64 if w0.dtype == np.float64 else np.float32
        return (w0.astype(wide) + d.astype(wide)).astype(w0.dtype)

    def load(self, name: str) -> np.ndarray:
        if name in self._saved:
            return self._adapter.load(self._saved[name]).astype(self.info(name).dtype)
        w0 = self.base.load(name)
        d = self.delta(name)
        return w0 if d is None else self._merge(w0, d)

    def load_rows(self, name: str, start: SupportsIndex, stop: SupportsIndex) -> np.ndarray:
        begin, end, _ = self._rows(name, start, stop)
        if name in self._saved:
            return self._adapter.load_rows(self._saved[name], begin, end).astype(
                self.info(name).dtype
            )
        w0 = self.base.load_rows(name, begin, end)
        d = self.delta(name, (begin, end))
        return w0 if d is None else self._merge(w0, d)

    def close(self) -> None:
        self._adapter.close()
