"""Checkpoint readers: one tensor at a time from safetensors (single or HF-sharded) and GGUF.

Conventions: tensor names are Hugging Face names (`model.layers.3.self_attn.q_proj.weight`); matrices are in the
`nn.Linear.weight` layout `[out, in]` (paper-digest §1, "Layout"). `load` returns the dtype as stored
(`ml_dtypes.bfloat16`, `float16`, `float32`, `float64`) for safetensors and float32 after dequantization for
quantized GGUF tensors. Nothing is loaded when a checkpoint is opened: only headers are read and validated, so a
truncated or corrupt file fails at `open_checkpoint` with a one-line `CheckpointError`, not later in a traceback.

Unsupported dtypes: safetensors tensors that are not floating point (integers, bool, float8 and other packed
types) are *skipped with a reason*: they are absent from `names()` and listed in `Checkpoint.skipped` (name ->
reason), so a comparison sees them as missing rather than crashing on them.
"""

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, SupportsIndex

import ml_dtypes  # registers bfloat16 with NumPy; must precede any bf16 read
import numpy as np

from threegate.checkpoints.base import FORMATS as FORMATS
from threegate.checkpoints.base import Checkpoint as Checkpoint
from threegate.checkpoints.base import TensorInfo as TensorInfo
from threegate.errors import CheckpointError, FormatError

__all__ = [
    "FORMATS",
    "Checkpoint",
    "SafetensorsCheckpoint",
    "TensorInfo",
    "open_checkpoint",
]

#: safetensors dtype codes that threegate reads, and their NumPy dtypes.
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
}

#: Byte widths of the safetensors dtypes threegate skips (used to validate their offsets).
_SKIPPED_WIDTHS = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "I32": 4,
    "U32": 4,
    "I64": 8,
    "U64": 8,
}

_MAX_HEADER_BYTES = 100_000_000  # the limit safetensors itself enforces (MAX_HEADER_SIZE)


class _Entry(NamedTuple):
    file: Path
    info: TensorInfo
    offset: int  # absolute byte offset of the tensor's data in `file`


def read_safetensors_header(
    path: Path,
) -> tuple[dict[str, TensorInfo], dict[str, str], dict[str, str], dict[str, int]]:
    """Parse and validate a safetensors header without reading tensor data.

    Checks what safetensors itself requires: the 8-byte length prefix, the JSON (no duplicate names, string
    metadata), each entry's dtype/shape/offsets (integers; offsets must match shape × itemsize and tile the
    data section without gaps or overlaps), and that the data section ends exactly at the end of the file.

    Returns:
        (infos of readable tensors, skipped name -> reason, the `__metadata__` dict).

    Raises:
        CheckpointError: one line naming the file and the problem.
    """
    label = str(path)
    size = path.stat().st_size
    header, meta, n = _header_json(path, label, size)
    infos: dict[str, TensorInfo] = {}
    skipped: dict[str, str] = {}
    spans: list[tuple[int, int]] = []
    offsets_abs: dict[str, int] = {}
    for name, entry in header.items():
        code, shape, begin, end = _header_entry(label, name, entry)
        spans.append((begin, end))
        offsets_abs[name] = 8 + n + begin
        if code in SAFETENSORS_DTYPES:
            infos[name] = TensorInfo(name, shape, SAFETENSORS_DTYPES[code])
        else:
            skipped[name] = f"dtype {code} is not a floating-point type threegate compares"
    _check_tiling(label, spans, size - 8 - n)
    return infos, skipped, dict(meta), offsets_abs


def _header_json(path: Path, label: str, size: int) -> tuple[dict, dict, int]:
    """The header's JSON object (without `__metadata__`), the metadata, and the header's length."""
    if size < 8:
        raise CheckpointError(
            f"{label}: truncated: {size} bytes, shorter than the 8-byte header length"
        )
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if n > _MAX_HEADER_BYTES:
            raise CheckpointError(f"{label}: corrupt header: length prefix {n} is not plausible")
        if n > size - 8:
            raise CheckpointError(
                f"{label}: truncated: header length says {n} bytes, file has {size - 8} after the prefix"
            )
        raw = fh.read(n)
    try:  # ValueError covers bad UTF-8, bad JSON and over-long integer literals
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except ValueError as err:
        raise CheckpointError(f"{label}: corrupt header: not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{label}: corrupt header: expected a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{label}: corrupt header: __metadata__ is not an object of strings")
    return header, meta, n


def _header_entry(label: str, name: str, entry) -> tuple[str, tuple[int, ...], int, int]:
    """One tensor's (dtype code, shape, begin, end), checked: known dtype, ordered offsets, size = shape ×
    itemsize."""
    try:
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    except (TypeError, KeyError):
        code = shape = offsets = None
    if not (isinstance(code, str) and _int_list(shape) and _int_list(offsets, 2)):
        raise CheckpointError(f"{label}: corrupt header: bad entry for tensor {name!r}")
    shape, (begin, end) = tuple(shape), offsets
    if code in SAFETENSORS_DTYPES:
        width = SAFETENSORS_DTYPES[code].itemsize
    elif code in _SKIPPED_WIDTHS:
        width = _SKIPPED_WIDTHS[code]
    else:
        raise CheckpointError(
            f"{label}: corrupt header: unknown dtype {code!r} for tensor {name!r}"
        )
    if begin > end:
        raise CheckpointError(f"{label}: corrupt header: bad offsets for tensor {name!r}")
    if end - begin != math.prod(shape) * width:
        raise CheckpointError(
            f"{label}: corrupt header: tensor {name!r} has {end - begin} bytes, "
            f"shape {list(shape)} {code} needs {math.prod(shape) * width}"
        )
    return code, shape, begin, end


def _check_tiling(label: str, spans: list[tuple[int, int]], have: int) -> None:
    """The tensors' byte spans tile the `have` bytes of the data section: no gap, no overlap, nothing after."""
    spans = sorted(spans)
    for (_, end0), (begin1, _) in zip([(0, 0), *spans], spans, strict=False):
        if begin1 != end0:
            raise CheckpointError(
                f"{label}: corrupt header: tensor data {'overlaps' if begin1 < end0 else 'has a gap'} "
                f"at byte {min(begin1, end0)}"
            )
    data_end = max((e for _, e in spans), default=0)
    if data_end > have:
        raise CheckpointError(
            f"{label}: truncated: header says {data_end} bytes of data, file has {have}"
        )
    if data_end < have:  # safetensors rejects such files ("not fully covered")
        raise CheckpointError(
            f"{label}: corrupt: {have - data_end} bytes after the {data_end} bytes of tensor data"
        )


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def _int_list(x: object, length: int | None = None) -> bool:
    """A JSON list of non-negative integers (not bools), of `length` items if given."""
    return (
        isinstance(x, list)
        and (length is None or len(x) == length)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x)
    )


class SafetensorsCheckpoint(Checkpoint):
    """One `.safetensors` file, or an HF-sharded folder (`*.safetensors.index.json` + shards).

    Args:
        files: the safetensors file(s).
        path: what the user named (file, folder or index).
        fmt: "safetensors" or "safetensors-sharded".
        weight_map: for sharded checkpoints, tensor name -> shard file name; `None` for a single file.
    """

    def __init__(
        self, files: Sequence[Path], path: Path, fmt: str, weight_map: dict[str, str] | None = None
    ):
        self.path = path
        self.format = fmt
        self.skipped = {}
        self.metadata: dict[str, str] = {}
        self._entries: dict[str, _Entry] = {}
        for file in files:
            infos, skipped, meta, offsets = read_safetensors_header(file)
            self.metadata.update(meta)
            wanted = None
            if weight_map is not None:
                wanted = {k for k, v in weight_map.items() if v == file.name}
                missing = sorted(wanted - infos.keys() - skipped.keys())
                if missing:
                    shown = ", ".join(missing[:5]) + (
                        f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
                    )
                    raise CheckpointError(
                        f"{path}: index maps {len(missing)} name(s) to {file.name} that it does not hold: {shown}"
                    )
            for name, info in infos.items():
                if wanted is None or name in wanted:
                    self._entries[name] = _Entry(file, info, offsets[name])
            self.skipped.update({k: v for k, v in skipped.items() if wanted is None or k in wanted})
        self._names = sorted(self._entries)

    def names(self) -> list[str]:
        return list(self._names)

    def _entry(self, name: str) -> _Entry:
        if name in self._entries:
            return self._entries[name]
        if name in self.skipped:
            raise CheckpointError(f"{self.path}: tensor {name!r} skipped: {self.skipped[name]}")
        raise CheckpointError(f"{self.path}: no tensor named {name!r}")

    def info(self, name: str) -> TensorInfo:
        return self._entry(name).info

    def load(self, name: str) -> np.ndarray:
        entry = self._entry(name)
        return _read_block(entry.file, entry.offset, entry.info)

    def load_rows(self, name: str, start: SupportsIndex, stop: SupportsIndex) -> np.ndarray:
        entry = self._entry(name)
        begin, end, _ = self._rows(name, start, stop)
        row_bytes = math.prod(entry.info.shape[1:]) * entry.info.dtype.itemsize
        info = entry.info._replace(shape=(end - begin, *entry.info.shape[1:]))
        return _read_block(entry.file, entry.offset + begin * row_bytes, info)

    def close(self) -> None:
        """Nothing to release: every read opens, reads and closes its file."""


def _read_block(file: Path, offset: int, info: TensorInfo) -> np.ndarray:
    """Read one tensor (or row block) with a plain positioned read into a fresh array.

    Not memory-mapped on purpose: a mapped checkpoint's touched pages count in the process's resident set until
    the map is dropped, which doubled `compare`'s peak memory. The header was validated when the checkpoint was
    opened, so a short read here means the file changed underneath us. Data are little-endian (safetensors).
    """
    nbytes = math.prod(info.shape) * info.dtype.itemsize
    try:
        with open(file, "rb") as fh:
            fh.seek(offset)
            raw = np.fromfile(fh, dtype=np.uint8, count=nbytes)
    except OSError as err:
        raise CheckpointError(f"{file}: cannot read {info.name!r}: {err}") from None
    if raw.size != nbytes:
        raise CheckpointError(
            f"{file}: truncated while reading {info.name!r}: got {raw.size} of {nbytes} bytes "
            "(was the file modified after it was opened?)"
        )
    arr = raw.view(info.dtype.newbyteorder("<")).reshape(info.shape)
    return _checked(arr.astype(info.dtype, copy=False), info)


def _checked(arr: np.ndarray, info: TensorInfo) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != info.dtype or arr.shape != info.shape:
        raise CheckpointError(
            f"{info.name}: read {arr.dtype}{list(arr.shape)}, header says {info.dtype}{list(info.shape)}"
        )
    return arr


def _read_index(index: Path) -> dict[str, str]:
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except ValueError as err:
        raise CheckpointError(f"{index}: corrupt index: not valid JSON ({err})") from None
    wmap = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wmap, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()
    ):
        raise CheckpointError(f"{index}: corrupt index: no weight_map of name -> shard file")
    for shard in set(wmap.values()):
        if Path(shard).name != shard:
            raise CheckpointError(
                f"{index}: corrupt index: shard {shard!r} is not a plain file name"
            )
    return wmap


def _open_sharded(index: Path, path: Path) -> SafetensorsCheckpoint:
    wmap = _read_index(index)
    shards = sorted(set(wmap.values()))
    missing = [s for s in shards if not (index.parent / s).is_file()]
    if missing:
        raise CheckpointError(
            f"{index}: {len(missing)} of {len(shards)} shard(s) missing: {', '.join(missing[:5])}"
        )
    return SafetensorsCheckpoint(
        [index.parent / s for s in shards], path, "safetensors-sharded", wmap
    )


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open a checkpoint for lazy, per-tensor reading.

    Accepts a `.safetensors` file; a `*.safetensors.index.json` file; a `.gguf` file; or a folder holding
    `model.safetensors`, else a `*.safetensors.index.json` (HF sharded layout), else exactly one
    `.safetensors` or one `.gguf` file.

    Raises:
        CheckpointError: missing path, truncated/corrupt file, bad index (missing shard, unmapped name).
        FormatError: a path whose format is not one of `FORMATS`.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return SafetensorsCheckpoint([p / "model.safetensors"], p, "safetensors")
        for pattern in ("*.safetensors.index.json", "*.safetensors", "*.gguf"):
            # hidden files are skipped: the writer's temporaries are `.threegate-*.safetensors`
            found = sorted(f for f in p.glob(pattern) if not f.name.startswith("."))
            if len(found) > 1:
                raise FormatError(f"{p}: ambiguous: {len(found)} files match {pattern}; name one")
            if found:
                return (
                    open_checkpoint(found[0])
                    if pattern != "*.safetensors.index.json"
                    else _open_sharded(found[0], p)
                )
        raise FormatError(f"{p}: folder holds no checkpoint; known formats: {', '.join(FORMATS)}")
    name = p.name.lower()
    if name.endswith(".safetensors.index.json"):
        return _open_sharded(p, p)
    if name.endswith(".safetensors"):
        return SafetensorsCheckpoint([p], p, "safetensors")
    if name.endswith(".gguf"):
        from threegate.checkpoints.gguf import GGUFCheckpoint

        return GGUFCheckpoint(p)
    raise FormatError(
        f"{p}: unknown checkpoint format; known: .safetensors, .safetensors.index.json, .gguf, "
        "or a folder with model.safetensors / *.safetensors.index.json"
    )
