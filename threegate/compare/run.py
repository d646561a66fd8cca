"""The drivers of `threegate compare`: serial (one tensor at a time) or on Ray; results appended as computed.

Outputs in the run folder `out`:

* `run.json` — the settings (checked again on `--resume`), versions, device.
* `tensors.jsonl` — one record per (tensor, tuned checkpoint), see `threegate.compare.metrics`.
* `pairs.jsonl` — with two or more tuned checkpoints: per tensor and pair, Jaccard of the update masks (M3) and
  its Bernoulli baseline (M4).
* `profiles.jsonl` — arrays for the figures: row/column update ratios, principal angles, singular values.
* `consensus/*.npz` — consensus ratio maps (M5) of the matrices of the chosen layer.
* `costs.jsonl` — per unit of work (`threegate.compare.work`): wall and CPU seconds, bytes read, host, pid.

Both drivers run the same units (`threegate.compare.work`); the Ray driver (`cfg.ray`, see
`threegate.compare.distributed`) runs them as Ray tasks and appends lines in completion order. A complete run
ends with `canonicalize`, which rewrites the JSONL files in stream order, so the final files of a serial and a
Ray run are the same bytes (`threegate.compare.order`).

Memory: the base tensor, one tuned tensor and one update mask per tuned checkpoint at a time. Embedding and
`lm_head` matrices get no spectral work unless `embeddings=True` (their SVD and global top-α selection would
need several full float copies of a $151936\\times1536$ matrix); when larger than `block_bytes` they are read in
row blocks, so only sparsity, norms and update ratios are computed for them (`spectral_skipped` says so).
Every record is flushed (fsync'ed every few seconds and at the end, `threegate.compare.jsonl`); `resume=True` skips what `tensors.jsonl` / `pairs.jsonl` already hold.
"""

import ctypes
import ctypes.util
import dataclasses
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import jax

from threegate.checkpoints import (
    Checkpoint,
    check_alignment,
    layer_index,
    open_checkpoint,
)
from threegate.checkpoints.adapter import open_tuned
from threegate.checkpoints.arch import Architecture, View, architecture_for
from threegate.compare.metrics import measure_info
from threegate.compare.order import canonicalize
from threegate.compare.work import (
    Job,
    UnitCost,
    UnitResult,
    block_ranges,
    consensus_path,
    finish_blocked,
    run_block,
    run_tensor,
)
from threegate.records import JsonlWriter, read_jsonl

__all__ = [
    "CompareConfig",
    "RunWriters",
    "choose_layer",
    "plan_jobs",
    "release_heap",
    "run_compare",
]

#: Settings a resumed run must share with the stored one (the name filter may differ: resume a filtered run
#: with the full set).
_SETTINGS = ("k", "alpha", "spectral", "dtype", "embeddings")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Settings of one `threegate compare` run (see the command's help for each)."""

    base: str
    tuned: tuple[str, ...]
    out: str
    k: int = 64
    alpha: float = 0.5
    include: str | None = None
    exclude: str | None = None
    spectral: bool = True
    dtype: str = "float32"
    resume: bool = False
    embeddings: bool = False
    layer: str | None = None
    block_bytes: int = 32 * 2**20
    ray: str | None = None
    max_retries: int = 3

    def __post_init__(self):
        if not self.tuned:
            raise ValueError("compare needs at least one tuned checkpoint")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"--k must be a positive integer, got {self.k}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"--alpha must be in (0, 1), got {self.alpha}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64, got {self.dtype}")
        for flag, rx in (("--include", self.include), ("--exclude", self.exclude)):
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as err:
                    raise ValueError(f"{flag} {rx!r}: bad regular expression ({err})") from None
        if len(set(self.keys())) != len(self.tuned):
            raise ValueError("the same tuned checkpoint is given twice")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(
                f"--max-retries must be a non-negative integer, got {self.max_retries}"
            )
        if self.ray is not None and not self.ray.strip():
            raise ValueError("--ray ADDRESS: empty address")

    def keys(self) -> list[str]:
        """The tuned checkpoints' resolved paths (the `tuned` field of the records)."""
        return [str(Path(t).resolve()) for t in self.tuned]


def choose_layer(names: list[str], layer: str | None) -> tuple[int | None, str | None]:
    """The layer index for the per-layer figures and consensus maps, and a chosen tensor name if one was given.

    `layer` may be None (the middle block), a block index ("13") or a tensor name.
    """
    indices = sorted({i for i in map(layer_index, names) if i is not None})
    if layer is None:
        return (indices[len(indices) // 2] if indices else None), None
    if layer.isdigit():
        if int(layer) not in indices:
            raise ValueError(f"--layer {layer}: no selected tensor has that layer index")
        return int(layer), None
    if layer not in names:
        raise ValueError(f"--layer {layer!r}: not a selected tensor name or a layer index")
    return layer_index(layer), layer


def release_heap() -> None:
    """Hand freed heap memory back to the OS (glibc `malloc_trim`); a no-op where there is no glibc.

    Each large tensor frees a few hundred MB of temporaries; glibc keeps much of it mapped, and across
    hundreds of tensors the retained heap, not the live data, would set the peak RSS.
    """
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_LIBC = None


def _skip_reason(view: View, cfg: CompareConfig) -> str | None:
    if not cfg.spectral:
        return "--no-spectral"
    if view.layer_type in ("embed", "lm_head") and not cfg.embeddings:
        return "embedding/lm_head: skipped by default (memory); pass --embeddings"
    return None


def _check_settings(out: Path, settings: dict) -> None:
    old = json.loads((out / "run.json").read_text())
    diff = [
        f"{key}: {old.get(key)!r} -> {settings[key]!r}"
        for key in _SETTINGS
        if old.get(key) != settings[key]
    ]
    if diff:
        raise ValueError(
            f"--resume with different settings than the run in {out}: " + "; ".join(diff)
        )
    if old.get("base") != settings["base"]:
        raise ValueError(f"--resume with a different base checkpoint than the run in {out}")


def _prepare_out(cfg: CompareConfig, settings: dict) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "tensors.jsonl").exists():
        if not cfg.resume:
            raise ValueError(
                f"{out / 'tensors.jsonl'} exists; pass --resume to continue it or pick another --out"
            )
        if (out / "run.json").exists():
            _check_settings(out, settings)
    (out / "run.json").write_text(json.dumps(settings, indent=1) + "\n")
    return out


def run_compare(cfg: CompareConfig, progress: Callable | None = None) -> Path:
    """Run the comparison and return the run folder (the summary is built separately from its files).

    Args:
      cfg: settings.
      progress: optional wrapper for the iterable of units (e.g. a tqdm factory).

    Raises:
      CheckpointError / FormatError: unreadable inputs; MismatchError: names or shapes do not align;
      ValueError: bad settings, or `--resume` with settings that differ from the stored run.
      ThreegateError: `cfg.ray` set and Ray not installed, or a Ray task lost beyond its retries.
    """
    keys = cfg.keys()
    base = open_checkpoint(cfg.base)
    tuned: list[Checkpoint] = []
    try:
        tuned.extend(open_tuned(t, base) for t in cfg.tuned)
        names = check_alignment([base, *tuned], cfg.include, cfg.exclude)
        layer, _ = choose_layer(list(names), cfg.layer)
        arch = architecture_for(cfg.base, *cfg.tuned)
        views = {n: arch.views(n, base.info(n).shape) for n in names}
        settings = {
            **{key: getattr(cfg, key) for key in (*_SETTINGS, "include", "exclude")},
            "base": str(Path(cfg.base).resolve()),
            "tuned": keys,
            "layer": layer,
            "layer_tensor": cfg.layer,
            "measure": measure_info(cfg.dtype),
            "jax_version": jax.__version__,
            "dtype_differences": names.dtype_differences,
            "skipped_by_reader": names.skipped,
            "architecture": arch.describe(),
            "warnings": run_warnings(arch, views, names)
            + [w for t in tuned for w in getattr(t, "warnings", [])],
        }
        out = _prepare_out(cfg, settings)
        jobs = plan_jobs(cfg, base, keys, list(names), layer, out, views)
        if cfg.ray is None or not jobs:  # nothing left to do: no need to start Ray
            _stream(cfg, base, tuned, keys, jobs, out, progress)
        else:
            from threegate.compare.distributed import stream_ray

            stream_ray(cfg, base, tuned, keys, jobs, out, progress)
        canonicalize(out, keys)
    finally:
        for c in (base, *tuned):
            c.close()
    return out


def _done_sets(out: Path) -> tuple[set, set]:
    done = {(r["name"], r["tuned"]) for r in read_jsonl(out / "tensors.jsonl")}
    pairs = {(r["name"], r["tuned_a"], r["tuned_b"]) for r in read_jsonl(out / "pairs.jsonl")}
    return done, pairs


def run_warnings(arch: Architecture, views: dict[str, tuple[View, ...]], names) -> list[str]:
    """The run's warnings, one line each: the typing's (`Architecture.warnings`, untyped matrices), dtype
    differences between base and tuned, and tensors the reader cannot compare (integer, bool, float8)."""
    lines = list(arch.warnings)
    flat = [v for vs in views.values() for v in vs]
    lines += [w for w in (arch.untyped_warning(flat), arch.vision_warning(flat)) if w]
    diffs = names.dtype_differences
    if diffs:
        lines.append(
            f"{len(diffs)} tensor(s) stored in different dtypes in base and tuned (e.g. {diffs[0]}): "
            "'unchanged' then means equal values after an exact float64 upcast, not equal stored bits"
        )
    if names.skipped:  # lines "FILE: NAME: reason", one per checkpoint holding the tensor
        skipped = sorted({line.split(": ")[1] for line in names.skipped if line.count(": ") >= 2})
        lines.append(
            f"{len(skipped)} integer/bool/float8 tensor(s) are not weights threegate compares and were "
            f"left out (not compared): {', '.join(skipped[:5])}"
            + (f" (+{len(skipped) - 5} more)" if len(skipped) > 5 else "")
            + f"; reader: {names.skipped[0]}"
        )
    return lines


def plan_jobs(
    cfg: CompareConfig,
    base: Checkpoint,
    keys: list[str],
    names: list[str],
    layer,
    out: Path,
    views: dict[str, tuple[View, ...]] | None = None,
) -> list[Job]:
    """The units still to run, in stream order: for each stored name what `tensors.jsonl`, `pairs.jsonl` and
    the consensus maps of `out` lack for any of its views (all of it for a fresh run)."""
    done, done_pairs = _done_sets(out)
    all_pairs = [(keys[i], keys[j]) for i in range(len(keys)) for j in range(i + 1, len(keys))]
    jobs = []
    for name in names:
        info = base.info(name)
        vs = views[name] if views is not None else Architecture().views(name, info.shape)
        want = frozenset(key for key in keys if any((v.name, key) not in done for v in vs))
        want_pairs = frozenset(
            pr for pr in all_pairs if any((v.name, *pr) not in done_pairs for v in vs)
        )
        in_layer = layer is not None and layer_index(name) == layer
        need_cons = in_layer and any(
            len(v.shape(info.shape)) == 2 and not consensus_path(out, v.name).exists() for v in vs
        )
        if not (want or want_pairs or need_cons):
            continue
        reason = _skip_reason(vs[0], cfg)
        big = math.prod(info.shape) * info.dtype.itemsize > cfg.block_bytes
        single = len(vs) == 1 and vs[0].whole
        blocked = reason is not None and big and single and vs[0].layer_type in ("embed", "lm_head")
        jobs.append(Job(name, want, want_pairs, need_cons, reason, blocked, tuple(vs)))
    return jobs


class RunWriters:
    """The run's appending JSONL files; `write` adds one unit's lines (each flushed)."""

    def __init__(self, out: Path):
        self._files = [
            JsonlWriter(out / f) for f in ("tensors.jsonl", "pairs.jsonl", "profiles.jsonl")
        ]
        self._costs = JsonlWriter(out / "costs.jsonl")

    def write(self, result: UnitResult, costs: list[UnitCost]) -> None:
        tw, pw, fw = self._files
        for line in result.profiles:
            fw.write(line)
        for rec in result.tensors:
            tw.write(rec)
        for rec in result.pairs:
            pw.write(rec)
        for c in costs:
            self._costs.write(c._asdict())

    def close(self) -> None:
        for w in (*self._files, self._costs):
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stream(cfg, base, tuned, keys, jobs, out, progress) -> None:
    """The serial driver: one unit after the other, in stream order."""
    it = progress(jobs) if progress is not None else jobs
    with RunWriters(out) as w:
        for job in it:
            if job.blocked:
                info = base.info(job.name)
                parts = [
                    run_block(base, tuned, job.name, a, b)
                    for a, b in block_ranges(info, cfg.block_bytes)
                ]
                dtypes = [t.info(job.name).dtype for t in tuned]
                res = finish_blocked(cfg, keys, job, info, dtypes, [p for p, _ in parts])
                w.write(res, [c for _, c in parts])
            else:
                res, cost = run_tensor(cfg, keys, base, tuned, job, out)
                w.write(res, [cost])
            release_heap()
