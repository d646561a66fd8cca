"""The drivers of `threegate compare`: serial (one tensor at a time) or on Ray; results appended as computed.

Outputs in the run folder `out`:

* `run.json` — the settings (checked again on `--resume`), versions, device.
* `tensors.jsonl` — one record per (tensor, tuned checkpoint), see `threegate.compare.metrics`.
* `pairs.jsonl` — with two or more tuned checkpoints: per tensor and pair, Jaccard of the update masks (M3) and
  its Bernoulli baseline (M4).
* `profiles.jsonl` — arrays for the figures: row/column update ratios, principal angles, singular values.
* `consensus/*.npz` — consensus ratio maps (M5) of the matrices of the chosen layer.
* `costs.jsonl` — per unit of work (`threegate.compare.work`): wall and CPU seconds, bytes read, host, pid.

Both backends run the same units (`threegate.compare.work`) with the same signature: the serial one
(`threegate.compare.serial.stream_serial`) and the Ray one (`cfg.ray`, `threegate.compare.distributed.stream_ray`),
which runs them as Ray tasks and appends lines in completion order. A complete run
ends with `canonicalize`, which rewrites the JSONL files in stream order, so the final files of a serial and a
Ray run are the same bytes (`threegate.compare.order`).

Memory: the base tensor, one tuned tensor and one update mask per tuned checkpoint at a time. Embedding and
`lm_head` matrices get no spectral work unless `embeddings=True` (their SVD and global top-α selection would
need several full float copies of a $151936\\times1536$ matrix); when larger than `block_bytes` they are read in
row blocks, so only sparsity, norms and update ratios are computed for them (`spectral_skipped` says so).
Every record is flushed (fsync'ed every few seconds and at the end, `threegate.compare.jsonl`); `resume=True` skips what `tensors.jsonl` / `pairs.jsonl` already hold.
"""

import json
import math
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
from threegate.compare.config import SETTING_FIELDS
from threegate.compare.config import CompareConfig as CompareConfig
from threegate.compare.metrics import measure_info
from threegate.compare.order import canonicalize
from threegate.compare.serial import stream_serial
from threegate.compare.work import (
    Job,
    consensus_path,
)
from threegate.records import read_jsonl

__all__ = [
    "CompareConfig",
    "choose_layer",
    "plan_jobs",
    "run_compare",
]


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
        for key in SETTING_FIELDS
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
            **{key: getattr(cfg, key) for key in (*SETTING_FIELDS, "include", "exclude")},
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
            stream_serial(cfg, base, tuned, keys, jobs, out, progress)
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
