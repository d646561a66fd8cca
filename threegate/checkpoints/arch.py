"""Layer types from a checkpoint's `config.json`: a registry keyed by `model_type`.

`architecture_for(path)` reads the config next to a checkpoint (the `text_config` of a multimodal one) and
returns an `Architecture`; `Architecture.views(name, shape)` says how one stored tensor is analysed: as one
matrix, or as the parts of a fused one, each a `View` with its own record name, layer type, layer index and
expert index. Every view is measured in the `nn.Linear.weight` layout `[out, in]`:

* Conv1D weights (GPT-2) are stored `[in, out]` and transposed once (`View.transpose`).
* Fused matrices are split along their output rows by the config's head layout (`View.rows`, a
  `(period, offset, width)` selection: rows $r$ with $offset \\le r \\bmod period < offset + width$):

  - concatenated q | k | v (Phi-3 `qkv_proj`, GPT-2 `c_attn`, Falcon multi-query): sizes
    $n_h d$, $n_{kv} d$, $n_{kv} d$;
  - per head [q_h | k_h | v_h] (GPT-NeoX `query_key_value`, whose forward views the output as
    `[n_h, 3d]` and chunks the last axis; Falcon without multi-query): period $3d$;
  - per kv group [q_1 .. q_g | k | v] (Falcon `new_decoder_architecture`, $g = n_h/n_{kv}$): period $(g+2)d$;
  - gate | up halves (Phi-3 `gate_up_proj`, stacked experts' `gate_up_proj`).

* Multimodal checkpoints (Gemma 3, ...): the language model's tensors (`language_model.` prefix) are typed
  as above with the head counts of `text_config`; the vision tower and projector are typed `vision`.
* MoE experts (`experts.N.*`, Mixtral's `w1`/`w3`/`w2` = gate/up/down, stacked `[E, out, in]` expert tensors)
  get their projection type and `expert`; shared experts get `expert_kind = "shared"`; routers are `router`.

Anything the registry does not know keeps the name-based type of `classify` (possibly `other`) and is still
measured; `Architecture.warnings` names what could not be typed or split, once.
"""

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from threegate.checkpoints.stream import LINEAR_TYPES, classify, layer_index

__all__ = [
    "FAMILIES",
    "PROJECTION_TYPES",
    "Architecture",
    "View",
    "architecture_for",
    "read_config",
]

#: Matrix types counted in the "linear" aggregate: the paper's seven projections, DeepSeek's MLA
#: projections and MoE routers (every `nn.Linear` weight of a block).
PROJECTION_TYPES = (*LINEAR_TYPES, "q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj", "router")


class View(NamedTuple):
    """How one record is cut out of a stored tensor.

    Attributes:
      name: record name (the stored name, with `[part]` for a fused part or `[E]`/`[E,part]` for a stacked
        expert tensor).
      tensor: stored tensor name.
      layer_type: one of `PROJECTION_TYPES` or `classify`'s types.
      layer: block index or None.
      expert: expert index (routed experts) or None.
      expert_kind: "routed", "shared" or None.
      part: "q", "k", "v", "gate", "up" for parts of a fused matrix, else None.
      transpose: the stored tensor is `[in, out]` (Conv1D): transposed before anything else.
      stacked: index into the leading expert axis of a stacked `[E, out, in]` tensor, or None.
      rows: `(period, offset, width)` row selection of a fused part, or None (all rows).
    """

    name: str
    tensor: str
    layer_type: str
    layer: int | None
    expert: int | None = None
    expert_kind: str | None = None
    part: str | None = None
    transpose: bool = False
    stacked: int | None = None
    rows: tuple[int, int, int] | None = None

    @property
    def whole(self) -> bool:
        """True when the view is the stored tensor itself (no transpose, stack index or row selection)."""
        return not self.transpose and self.stacked is None and self.rows is None

    def take(self, a: np.ndarray) -> np.ndarray:
        """The view of stored array `a`, C-contiguous (a copy unless `whole`)."""
        if self.whole:
            return a
        if self.stacked is not None:
            a = a[self.stacked]
        if self.transpose:
            a = a.T
        if self.rows is not None:
            period, offset, width = self.rows
            a = a.reshape(a.shape[0] // period, period, *a.shape[1:])[:, offset : offset + width]
            a = a.reshape(-1, *a.shape[2:])
        return np.ascontiguousarray(a)

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        """The view's shape for a stored tensor of shape `stored`."""
        s = tuple(stored)
        if self.stacked is not None:
            s = s[1:]
        if self.transpose:
            s = s[::-1]
        if self.rows is not None:
            s = (s[0] // self.rows[0] * self.rows[2], *s[1:])
        return s

    def fields(self) -> dict:
        """The record fields this view sets."""
        return {
            "layer_type": self.layer_type,
            "layer": self.layer,
            "tensor": self.tensor,
            "part": self.part,
            "expert": self.expert,
            "expert_kind": self.expert_kind,
            "transposed": self.transpose,
        }


@dataclass(frozen=True)
class Family:
    """One `model_type`'s naming rules.

    Attributes:
      renames: module token (the name component before `.weight`/`.bias`, or `parent.token`) -> layer type.
      fused: module token -> split rule: "qkv_concat", "qkv_per_head", "qkv_falcon", "gate_up".
      conv1d: module tokens stored `[in, out]`.
    """

    renames: dict[str, str] = field(default_factory=dict)
    fused: dict[str, str] = field(default_factory=dict)
    conv1d: frozenset[str] = frozenset()


_LLAMA = Family()
_MOE = Family(renames={"gate": "router", "shared_expert_gate": "router"})
_MLA = Family(
    renames={
        "gate": "router",
        "q_a_proj": "q_a_proj",
        "q_b_proj": "q_b_proj",
        "kv_a_proj_with_mqa": "kv_a_proj",
        "kv_b_proj": "kv_b_proj",
    }
)

#: The registry: `model_type` -> naming rules. Llama-style names (q/k/v/o/gate/up/down_proj, `experts.N.`)
#: are understood for every family; the entries add what a family names differently.
FAMILIES: dict[str, Family] = {
    **{
        t: _LLAMA
        for t in (
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3",
            "gemma3_text",
            "olmo",
            "olmo2",
            "smollm3",
            "granite",
            "cohere",
            "starcoder2",
        )
    },
    "phi3": Family(fused={"qkv_proj": "qkv_concat", "gate_up_proj": "gate_up"}),
    "gpt2": Family(
        renames={
            "attn.c_proj": "o_proj",
            "mlp.c_fc": "up_proj",
            "mlp.c_proj": "down_proj",
            "wpe": "embed",
        },
        fused={"c_attn": "qkv_concat"},
        conv1d=frozenset({"c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
    ),
    "gptj": Family(renames={"out_proj": "o_proj", "fc_in": "up_proj", "fc_out": "down_proj"}),
    "gpt_neox": Family(
        renames={
            "attention.dense": "o_proj",
            "dense_h_to_4h": "up_proj",
            "dense_4h_to_h": "down_proj",
            "embed_in": "embed",
            "embed_out": "lm_head",
        },
        fused={"query_key_value": "qkv_per_head"},
    ),
    "falcon": Family(
        renames={
            "self_attention.dense": "o_proj",
            "dense_h_to_4h": "up_proj",
            "dense_4h_to_h": "down_proj",
        },
        fused={"query_key_value": "qkv_falcon"},
    ),
    "mixtral": Family(
        renames={"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj", "gate": "router"}
    ),
    "olmoe": _MOE,
    "qwen2_moe": _MOE,
    "qwen3_moe": _MOE,
    "deepseek_v2": _MLA,
    "deepseek_v3": _MLA,
}

_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)\.")
_SHARED = re.compile(r"(?:^|\.)shared_experts?\.")
_STACKED = re.compile(r"(?:^|\.)experts\.(gate_up_proj|down_proj|gate_proj|up_proj)$")
_SUFFIX = re.compile(r"\.(weight|bias)$")
#: Parts of a multimodal checkpoint outside its language model: typed "vision", no layer index.
_VISION = re.compile(
    r"(?:^|\.)(?:vision_tower|vision_model|visual|multi_modal_projector|mm_projector|vision_embed)(?:\.|$)"
)


def read_config(path: str | Path) -> tuple[dict | None, Path | None]:
    """The `config.json` next to a checkpoint (its folder, or the folder of a file) and where it was found.

    A multimodal config's `text_config` is merged over it (head counts of the language model), keeping the
    outer `model_type`. Returns `(None, None)` where there is none or it is not a JSON object.
    """
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    cfg = folder / "config.json"
    if not cfg.is_file():
        return None, None
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None, cfg
    if not isinstance(doc, dict):
        return None, cfg
    text = doc.get("text_config")
    if isinstance(text, dict):
        doc = {**doc, **{k: v for k, v in text.items() if k != "model_type"}}
    return doc, cfg


def _int(cfg: dict, *keys: str) -> int | None:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


@dataclass
class Architecture:
    """Layer typing for one checkpoint: its family's rules and head layout (see the module docstring).

    Attributes:
      model_type: from `config.json` (None: none found; names alone type the tensors).
      config_path: where the config was read.
      heads, kv_heads, head_dim: attention layout (None where the config does not say).
      warnings: one line per problem found while typing (unknown `model_type`, unsplittable fused matrix,
        untyped matrices), each said once; filled by `views` and `untyped_warning`.
    """

    model_type: str | None = None
    config_path: Path | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    config: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _said: set = field(default_factory=set)

    @classmethod
    def from_config(cls, cfg: dict | None, config_path: Path | None = None) -> "Architecture":
        if cfg is None:
            return cls(config_path=config_path)
        heads = _int(cfg, "num_attention_heads", "n_head", "num_heads")
        kv = _int(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv")
        hidden = _int(cfg, "hidden_size", "n_embd", "d_model")
        head_dim = _int(cfg, "head_dim")
        if head_dim is None and heads and hidden and hidden % heads == 0:
            head_dim = hidden // heads
        mt = cfg.get("model_type") if isinstance(cfg.get("model_type"), str) else None
        arch = cls(mt, config_path, heads, kv or heads, head_dim, dict(cfg))
        if mt is not None and mt not in FAMILIES:
            arch._warn(
                f"model_type {mt!r} is not in threegate's layer-type registry: tensors typed by name only"
            )
        return arch

    @property
    def family(self) -> Family:
        return FAMILIES.get(self.model_type or "", _LLAMA)

    def _warn(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            self.warnings.append(line)

    def _token(self, base: str, table) -> str | None:
        """The longest-matching key of `table` for module path `base` (`parent.token` before `token`)."""
        parts = base.split(".")
        for n in (3, 2, 1):
            key = ".".join(parts[-n:])
            if len(parts) >= n and key in table:
                return key
        return None

    def views(self, name: str, shape: tuple[int, ...]) -> tuple[View, ...]:
        """How stored tensor `name` of `shape` is analysed: one `View`, or one per fused part / stacked expert."""
        fam = self.family
        if _VISION.search(name):
            return (View(name=name, tensor=name, layer_type="vision", layer=None),)
        base = _SUFFIX.sub("", name)
        is_bias = name.endswith(".bias") or name.endswith("_bias")
        layer = layer_index(name)
        m = _EXPERT.search(name)
        expert = int(m.group(1)) if m else None
        kind = "shared" if _SHARED.search(name) else ("routed" if m else None)
        stacked = _STACKED.search(name)
        if stacked and len(shape) == 3:
            return self._stacked_views(name, shape, stacked.group(1), layer, kind or "routed")
        token = self._token(base, fam.renames)
        ltype = fam.renames[token] if token else classify(name)
        if is_bias:
            ltype = "bias"
        transpose = self._token(base, fam.conv1d) is not None and len(shape) == 2
        common = dict(
            tensor=name, layer=layer, expert=expert, expert_kind=kind, transpose=transpose
        )
        fused = self._token(base, fam.fused)
        if fused is not None and len(shape) in (1, 2):
            out_rows = shape[-1] if transpose else shape[0]
            split = self._split(fam.fused[fused], out_rows)
            if split is None:
                self._warn(
                    f"{name}: fused matrix {list(shape)} does not match the config's head layout "
                    f"(heads={self.heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}): "
                    "measured unsplit, typed other"
                )
                return (View(name=name, layer_type="bias" if is_bias else "other", **common),)
            return tuple(
                View(
                    name=f"{name}[{part}]",
                    layer_type="bias" if is_bias else ptype,
                    part=part,
                    rows=rows,
                    **common,
                )
                for part, ptype, rows in split
            )
        return (View(name=name, layer_type=ltype, **common),)

    def _stacked_views(self, name, shape, token, layer, kind) -> tuple[View, ...]:
        n_exp = shape[0]
        if token == "gate_up_proj":
            if shape[1] % 2:
                self._warn(
                    f"{name}: stacked gate_up_proj {list(shape)} has an odd row count: typed other"
                )
                return (View(name=name, tensor=name, layer_type="other", layer=layer),)
            half = shape[1] // 2
            parts = (
                ("gate", "gate_proj", (shape[1], 0, half)),
                ("up", "up_proj", (shape[1], half, half)),
            )
        else:
            parts = ((None, token, None),)
        return tuple(
            View(
                name=f"{name}[{e}]" if part is None else f"{name}[{e},{part}]",
                tensor=name,
                layer_type=ptype,
                layer=layer,
                expert=e,
                expert_kind=kind,
                part=part,
                stacked=e,
                rows=rows,
            )
            for e in range(n_exp)
            for part, ptype, rows in parts
        )

    def _split(self, rule: str, rows: int):
        """[(part, layer type, (period, offset, width))] for a fused matrix with `rows` output rows, or None."""
        if rule == "gate_up":
            if rows % 2:
                return None
            h = rows // 2
            return [("gate", "gate_proj", (rows, 0, h)), ("up", "up_proj", (rows, h, h))]
        nh, nkv, d = self.heads, self.kv_heads, self.head_dim
        if not (nh and nkv and d):
            return None
        if rule == "qkv_falcon":
            if self.config.get("new_decoder_architecture"):
                rule = "qkv_group"
            elif self.config.get("multi_query", True):
                nkv, rule = 1, "qkv_concat"
            else:
                nkv, rule = nh, "qkv_per_head"
        if rule == "qkv_concat" and rows == (nh + 2 * nkv) * d:
            q, kv = nh * d, nkv * d
            return [
                ("q", "q_proj", (rows, 0, q)),
                ("k", "k_proj", (rows, q, kv)),
                ("v", "v_proj", (rows, q + kv, kv)),
            ]
        if rule == "qkv_per_head" and nkv == nh and rows == 3 * nh * d:
            return [
                ("q", "q_proj", (3 * d, 0, d)),
                ("k", "k_proj", (3 * d, d, d)),
                ("v", "v_proj", (3 * d, 2 * d, d)),
            ]
        if rule == "qkv_group" and nh % nkv == 0 and rows == (nh + 2 * nkv) * d:
            g = nh // nkv
            p = (g + 2) * d
            return [
                ("q", "q_proj", (p, 0, g * d)),
                ("k", "k_proj", (p, g * d, d)),
                ("v", "v_proj", (p, (g + 1) * d, d)),
            ]
        return None

    def untyped_warning(self, views: list[View]) -> str | None:
        """One line naming the matrices typed `other` (measured, in the "all matrices" aggregate only)."""
        others = [v.name for v in views if v.layer_type == "other"]
        if not others:
            return None
        shown = ", ".join(others[:10]) + (
            f" (+{len(others) - 10} more)" if len(others) > 10 else ""
        )
        return (
            f"{len(others)} tensor(s) of no known layer type, measured and counted under 'all' only "
            f"(typed other): {shown}"
        )

    def vision_warning(self, views: list[View]) -> str | None:
        """One line counting the tensors of a vision tower / projector (outside the linear aggregate)."""
        vision = [v.name for v in views if v.layer_type == "vision"]
        if not vision:
            return None
        return (
            f"{len(vision)} tensor(s) of the vision tower / projector measured, typed vision, counted under "
            "'all' but not in the linear aggregate (the language model's projections)"
        )

    def describe(self) -> dict:
        """What `run.json` records about the typing."""
        return {
            "model_type": self.model_type,
            "config": None if self.config_path is None else str(self.config_path),
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
        }


def architecture_for(*paths: str | Path) -> Architecture:
    """The `Architecture` from the first of `paths` that has a `config.json` (names alone if none has)."""
    for p in paths:
        cfg, where = read_config(p)
        if cfg is not None:
            return Architecture.from_config(cfg, where)
    return Architecture()


def view_numel(view: View, stored: tuple[int, ...]) -> int:
    """Entries of a view."""
    return math.prod(view.shape(stored))
