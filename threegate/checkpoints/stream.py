"""Stream the same tensor from several checkpoints, one name at a time.

Order: names sorted by (group, layer index, name), where the token embedding comes first, then the transformer
blocks by their *numeric* layer index (`model.layers.2` before `model.layers.10`), then everything without a
layer index (final norm, `lm_head`). Memory: `aligned` holds one tensor per checkpoint, i.e. at most
(largest tensor) × (number of checkpoints), and loads nothing before it is advanced.

Layer types (`classify`) follow HF Llama/Qwen names; the paper's "linear layers" are the q, k, v, o, gate, up
and down projection weights (`is_linear`), which Tables 4/5 count (paper-digest §2).
"""

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from threegate.checkpoints.base import Checkpoint, TensorInfo
from threegate.errors import MismatchError

__all__ = [
    "LAYER_TYPES",
    "LINEAR_TYPES",
    "AlignedNames",
    "AlignedTensors",
    "aligned",
    "check_alignment",
    "classify",
    "is_linear",
    "layer_index",
    "stream_key",
]

#: Projection types of the paper's "linear layers only" scope.
LINEAR_TYPES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Every value `classify` returns.
LAYER_TYPES = (*LINEAR_TYPES, "embed", "lm_head", "norm", "bias", "other")

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|blk|block)\.(\d+)(?:\.|$)")
_PROJ = re.compile(r"(?:^|\.)(" + "|".join(LINEAR_TYPES) + r")(?:\.|$)")
_EMBED = re.compile(r"(?:^|\.)(?:embed_tokens|wte|word_embeddings|token_embd)(?:\.|$)")
_HEAD = re.compile(r"(?:^|\.)lm_head(?:\.|$)|^output\.weight$")
_NORM = re.compile(r"(?:^|\.)[a-z_]*(?:norm|ln_f|ln_\d|ln_attn|ln_mlp)[a-z_0-9]*(?:\.|$)")

_SHOWN = 10


def layer_index(name: str) -> int | None:
    """Transformer block index in `name` (`model.layers.12.mlp...` -> 12), or None."""
    m = _LAYER.search(name)
    return None if m is None else int(m.group(1))


def classify(name: str) -> str:
    """Layer type of a tensor name: one of `LAYER_TYPES`.

    Biases are "bias" whatever they belong to; norms (`input_layernorm`, `model.norm`, ...) are "norm".

    Example:
        >>> classify("model.layers.3.self_attn.q_proj.weight"), classify("model.norm.weight")
        ('q_proj', 'norm')
    """
    if name.endswith(".bias"):
        return "bias"
    m = _PROJ.search(name)
    if m is not None:
        return m.group(1)
    if _EMBED.search(name):
        return "embed"
    if _HEAD.search(name):
        return "lm_head"
    if _NORM.search(name):
        return "norm"
    return "other"


def is_linear(name: str) -> bool:
    """True for the weight of a q, k, v, o, gate, up or down projection (the paper's linear layers)."""
    return name.endswith(".weight") and classify(name) in LINEAR_TYPES


def stream_key(name: str) -> tuple[int, int, str]:
    """Sort key: embedding first, then blocks by numeric layer index, then the rest; ties by name."""
    idx = layer_index(name)
    if idx is not None:
        return (1, idx, name)
    return (0 if classify(name) == "embed" else 2, 0, name)


class AlignedTensors(NamedTuple):
    """One tensor name with its info and array from each checkpoint (same order as the checkpoints)."""

    name: str
    infos: tuple[TensorInfo, ...]
    arrays: tuple[np.ndarray, ...]


class AlignedNames(list):
    """The aligned tensor names in stream order (a `list[str]`), with what differs but is allowed.

    Attributes:
        dtype_differences: one line per name whose dtype differs between checkpoints,
            e.g. `"lm_head.weight: bfloat16 vs float32"`.
        skipped: one line per tensor a checkpoint skipped (unsupported dtype), with the reason.
    """

    def __init__(
        self, names: Sequence[str], dtype_differences: Sequence[str], skipped: Sequence[str]
    ):
        super().__init__(names)
        self.dtype_differences = list(dtype_differences)
        self.skipped = list(skipped)


def _regex(pattern: str | None, what: str) -> re.Pattern[str] | None:
    try:
        return None if pattern is None else re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{what} {pattern!r} is not a valid regex: {err}") from None


def _selected(names: list[str], include: str | None, exclude: str | None) -> list[str]:
    inc, exc = _regex(include, "include"), _regex(exclude, "exclude")
    return [
        n for n in names if (inc is None or inc.search(n)) and (exc is None or not exc.search(n))
    ]


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def check_alignment(
    checkpoints: Sequence[Checkpoint], include: str | None = None, exclude: str | None = None
) -> AlignedNames:
    """Pre-check that the checkpoints hold the same tensor names with the same shapes (headers only).

    Args:
        checkpoints: two or more (one is allowed and trivially aligned).
        include, exclude: regexes applied with `re.search` to each name; `exclude` wins.

    Returns:
        The selected names in stream order (`AlignedNames`, a list of str), carrying the allowed
        differences: `.dtype_differences` and `.skipped`.

    Raises:
        MismatchError: names present in some checkpoints but not all (first 10 shown, with a count), or
            shape mismatches (`name: (a, b) vs (c, d)`), in one line.
        ValueError: no checkpoints, an invalid regex, or a selection that matches no name.
    """
    if not checkpoints:
        raise ValueError("check_alignment needs at least one checkpoint")
    selections = [_selected(c.names(), include, exclude) for c in checkpoints]
    common = set(selections[0]).intersection(*selections[1:])
    problems = []
    for i, (c, sel) in enumerate(zip(checkpoints, selections, strict=True), start=1):
        missing = sorted(set().union(*selections) - set(sel), key=stream_key)
        if missing:
            problems.append(
                f"{len(missing)} name(s) missing in #{i} ({c.path.name}): {_listing(missing)}"
            )
    names = sorted(common, key=stream_key)
    shapes, dtypes = [], []
    for n in names:
        infos = [c.info(n) for c in checkpoints]
        if len({i.shape for i in infos}) > 1:
            shapes.append(f"{n}: " + " vs ".join(str(i.shape) for i in infos))
        if len({i.dtype for i in infos}) > 1:
            dtypes.append(f"{n}: " + " vs ".join(str(i.dtype) for i in infos))
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    if problems:
        raise MismatchError("checkpoints do not align: " + "; ".join(problems))
    if not names:
        raise ValueError(f"no tensor names selected (include={include!r}, exclude={exclude!r})")
    skipped = [
        f"{c.path.name}: {n}: {why}"
        for c in checkpoints
        for n in _selected(sorted(c.skipped), include, exclude)
        for why in (c.skipped[n],)
    ]
    return AlignedNames(names, dtypes, skipped)


def aligned(
    checkpoints: Sequence[Checkpoint], include: str | None = None, exclude: str | None = None
) -> Iterator[AlignedTensors]:
    """Yield each selected tensor name with that tensor loaded from every checkpoint, lazily.

    Runs `check_alignment` first (headers only, so a mismatch raises before any tensor is read); then loads
    exactly one tensor per checkpoint per step, in `stream_key` order, in each checkpoint's stored dtype.

    Args:
        checkpoints: the checkpoints to align, e.g. (base, tuned).
        include, exclude: name regexes (`re.search`).

    Yields:
        `AlignedTensors(name, infos, arrays)`.

    Raises:
        MismatchError: see `check_alignment` (raised on the first `next`, since this is a generator).
    """
    names = check_alignment(checkpoints, include, exclude)
    for name in names:
        infos = tuple(c.info(name) for c in checkpoints)
        arrays = tuple(c.load(name) for c in checkpoints)
        yield AlignedTensors(name, infos, arrays)
        del arrays
