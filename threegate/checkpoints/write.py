"""Write safetensors checkpoints, whole or HF-sharded, atomically and tensor by tensor.

Layout written (what `open_checkpoint` and Hugging Face read): a folder with `model.safetensors`, or with
`model-00001-of-0000N.safetensors` shards and `model.safetensors.index.json`
(`{"metadata": {"total_size": bytes}, "weight_map": {name: shard}}`). Arrays are written as they are
(bf16 via `ml_dtypes`, float16, float32, float64; little-endian, C order), so a write/read round trip is bitwise.

Memory: `save_safetensors_stream` takes an iterable of `(name, array)` and keeps one array at a time: tensor
bytes go to a temporary data file as they arrive, and the header (which needs every shape first) is written
in front of them when a shard is finished. Files appear under their final names only once all are complete
(temporary file + `os.replace`); on error the temporaries are removed.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import ml_dtypes
import numpy as np
import numpy.typing as npt

__all__ = ["INDEX_FILE", "SINGLE_FILE", "save_safetensors", "save_safetensors_stream", "shard_name"]

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

_CODES = {
    np.dtype(ml_dtypes.bfloat16): "BF16",
    np.dtype(np.float16): "F16",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
}


def shard_name(i: int, n: int) -> str:
    """HF shard file name, 1-based: `shard_name(1, 3) == "model-00001-of-00003.safetensors"`."""
    return f"model-{i:05d}-of-{n:05d}.safetensors"


class _Shard:
    """Tensor bytes spooled to a temporary file, and their header entries."""

    def __init__(self, folder: Path):
        fd, name = tempfile.mkstemp(prefix=".threegate-", suffix=".data", dir=folder)
        self.data_path = Path(name)
        self.fh: BinaryIO = os.fdopen(fd, "wb")
        self.header: dict[str, dict] = {}
        self.nbytes = 0

    def add(self, name: str, arr: np.ndarray) -> None:
        self.header[name] = {
            "dtype": _CODES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [self.nbytes, self.nbytes + arr.nbytes],
        }
        self.fh.write(arr.reshape(-1).view(np.uint8).data)
        self.nbytes += arr.nbytes

    def finish(self, folder: Path, metadata: dict[str, str]) -> Path:
        """Write header + data to a new temporary file in `folder`; returns its path."""
        self.fh.close()
        doc = {"__metadata__": metadata, **self.header}
        head = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        head += b" " * (-len(head) % 8)
        fd, name = tempfile.mkstemp(prefix=".threegate-", suffix=".safetensors", dir=folder)
        with os.fdopen(fd, "wb") as out, open(self.data_path, "rb") as src:
            out.write(len(head).to_bytes(8, "little"))
            out.write(head)
            shutil.copyfileobj(src, out, length=16 * 1024 * 1024)
        self.data_path.unlink()
        os.chmod(name, 0o644)  # mkstemp creates 0600; checkpoints are ordinary readable files
        return Path(name)

    def discard(self) -> None:
        self.fh.close()
        self.data_path.unlink(missing_ok=True)


def _prepared(name: object, arr: object, seen: set[str]) -> np.ndarray:
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise ValueError(f"bad tensor name {name!r}")
    if name in seen:
        raise ValueError(f"duplicate tensor name {name!r}")
    seen.add(name)
    a = np.asarray(arr)
    if a.dtype.newbyteorder("=") in _CODES and a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.dtype not in _CODES:
        raise TypeError(
            f"{name}: dtype {a.dtype} not supported; use bfloat16, float16, float32 or float64"
        )
    return np.ascontiguousarray(a)


def _target(path: str | os.PathLike[str], sharded: bool) -> tuple[Path, str | None]:
    p = Path(path)
    if p.suffix == ".safetensors":
        if sharded:
            raise ValueError(f"{p}: max_shard_bytes needs a folder path, not a .safetensors file")
        return p.parent, p.name
    return p, None


def save_safetensors_stream(
    items: Iterable[tuple[str, npt.ArrayLike]],
    path: str | os.PathLike[str],
    *,
    max_shard_bytes: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write `(name, array)` pairs as safetensors, holding one array at a time.

    Args:
        items: tensors in the order to store them; arrays (NumPy, or anything `np.asarray` takes, e.g. jax)
            of dtype bfloat16, float16, float32 or float64.
        path: a folder (created if needed), or a file path ending in `.safetensors` (single file only).
        max_shard_bytes: if given, write HF shards of at most this many tensor bytes each (a tensor larger
            than the limit gets a shard of its own) plus `model.safetensors.index.json`, even when one shard
            suffices. In a folder, a stale `model.safetensors` or old shards/index are removed.
        metadata: string pairs for the header's `__metadata__`; `{"format": "pt"}` is added unless given, so
            `transformers` accepts the files.

    Returns:
        The files written (shards, then the index).

    Raises:
        ValueError: bad or duplicate names, bad `max_shard_bytes`.
        TypeError: an unsupported dtype.
    """
    if max_shard_bytes is not None and max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    folder, filename = _target(path, max_shard_bytes is not None)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", **{str(k): str(v) for k, v in (metadata or {}).items()}}
    seen: set[str] = set()
    shard = _Shard(folder)
    written: list[Path] = []  # finished temporaries
    weight_map: dict[str, int] = {}
    total = 0
    done = False
    try:
        for name, arr in items:
            a = _prepared(name, arr, seen)
            if (
                max_shard_bytes is not None
                and shard.header
                and shard.nbytes + a.nbytes > max_shard_bytes
            ):
                written.append(shard.finish(folder, meta))
                shard = _Shard(folder)
            shard.add(name, a)
            weight_map[name] = len(written)
            total += a.nbytes
            del a, arr
        written.append(shard.finish(folder, meta))
        finals = _publish(folder, filename, written, weight_map, total, max_shard_bytes is not None)
        done = True
    finally:
        if not done:
            shard.discard()
            for tmp in written:
                tmp.unlink(missing_ok=True)
    return finals


def _publish(
    folder: Path,
    filename: str | None,
    temps: list[Path],
    weight_map: dict[str, int],
    total: int,
    sharded: bool,
) -> list[Path]:
    if not sharded:
        final = folder / (filename or SINGLE_FILE)
        os.replace(temps[0], final)
        if filename is None:
            _remove_stale(folder, keep={SINGLE_FILE})
        return [final]
    n = len(temps)
    names = [shard_name(i + 1, n) for i in range(n)]
    index = {
        "metadata": {"total_size": total},
        "weight_map": {k: names[v] for k, v in sorted(weight_map.items())},
    }
    fd, tmp_index = tempfile.mkstemp(prefix=".threegate-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=2)
    os.chmod(tmp_index, 0o644)
    finals = []
    for tmp, name in zip(temps, names, strict=True):
        os.replace(tmp, folder / name)
        finals.append(folder / name)
    os.replace(tmp_index, folder / INDEX_FILE)
    finals.append(folder / INDEX_FILE)
    _remove_stale(folder, keep={*names, INDEX_FILE})
    return finals


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Remove HF checkpoint files of an earlier save that the new one replaces."""
    for p in [folder / SINGLE_FILE, folder / INDEX_FILE, *folder.glob("model-*-of-*.safetensors")]:
        if p.name not in keep and p.is_file():
            p.unlink()


def save_safetensors(
    tensors: Mapping[str, npt.ArrayLike] | Iterable[tuple[str, npt.ArrayLike]],
    path: str | os.PathLike[str],
    *,
    max_shard_bytes: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write tensors as `model.safetensors` (or HF shards + index), atomically.

    `tensors` is a name -> array mapping, or any iterable of `(name, array)` pairs (streamed; see
    `save_safetensors_stream` for the arguments).

    Example:
        >>> import numpy as np, tempfile
        >>> from threegate.checkpoints import open_checkpoint
        >>> d = tempfile.mkdtemp()
        >>> _ = save_safetensors({"w": np.eye(2, dtype=np.float32)}, d)
        >>> open_checkpoint(d).load("w").tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    return save_safetensors_stream(items, path, max_shard_bytes=max_shard_bytes, metadata=metadata)
