"""The streaming driver of `threegate compare`: one tensor at a time, results appended as they are computed.

Outputs in the run folder `out`:

* `run.json` — the settings (checked again on `--resume`), versions, device.
* `tensors.jsonl` — one record per (tensor, tuned checkpoint), see `threegate.compare.metrics`.
* `pairs.jsonl` — with two or more tuned checkpoints: per tensor and pair, Jaccard of the update masks (M3) and
  its Bernoulli baseline (M4).
* `profiles.jsonl` — arrays for the figures: row/column update ratios, principal angles, singular values.
* `consensus/*.npz` — consensus ratio maps (M5) of the matrices of the chosen layer.

Memory: the base tensor, one tuned tensor and one update mask per tuned checkpoint at a time. Embedding and
`lm_head` matrices get no spectral work unless `embeddings=True` (their SVD and global top-α selection would
need several full float copies of a $151936\\times1536$ matrix); when larger than `block_bytes` they are read in
row blocks, so only sparsity, norms and update ratios are computed for them (`spectral_skipped` says so).
Every record is flushed and fsync'ed; `resume=True` skips what `tensors.jsonl` / `pairs.jsonl` already hold.
"""

import ctypes
import ctypes.util
import dataclasses
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from threegate.checkpoints import (
    Checkpoint,
    check_alignment,
    classify,
    layer_index,
    open_checkpoint,
)
from threegate.compare.coords import changed_mask, jaccard, jaccard_baseline
from threegate.compare.jsonl import JsonlWriter, read_jsonl
from threegate.compare.metrics import measure_info, prepare_base, tensor_metrics

__all__ = ["CompareConfig", "choose_layer", "run_compare"]

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


def _release_heap() -> None:
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


def _skip_reason(name: str, cfg: CompareConfig) -> str | None:
    if not cfg.spectral:
        return "--no-spectral"
    if classify(name) in ("embed", "lm_head") and not cfg.embeddings:
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


def _blocked(base, tuned, name: str, block_bytes: int):
    """Row-blocked pass over a large non-spectral tensor: counts accumulated per tuned checkpoint."""
    info = base.info(name)
    rows = info.shape[0]
    per_row = max(1, math.prod(info.shape[1:]) * 8)  # the block's float64 copies dominate
    step = max(1, block_bytes // per_row)
    acc = [dict(changed=0, nf1=0, d2=0.0, rows=[], cols=0, rule="bits") for _ in tuned]
    nf0, w2 = 0, 0.0
    inter = {}
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        a = base.load_rows(name, start, stop)
        nf0 += int(a.size - np.count_nonzero(np.isfinite(a)))
        a64 = a.astype(np.float64).ravel()
        w2 += float(np.dot(a64, a64))
        masks = []
        for t, st in zip(tuned, acc, strict=True):
            b = t.load_rows(name, start, stop)
            st["nf1"] += int(b.size - np.count_nonzero(np.isfinite(b)))
            m, st["rule"] = changed_mask(a, b)
            d = b.astype(np.float64).ravel() - a64
            st["d2"] += float(np.dot(d, d))
            st["changed"] += int(np.count_nonzero(m))
            if m.ndim == 2:
                st["rows"].append(m.mean(axis=1))
                st["cols"] = st["cols"] + m.sum(axis=0)
            masks.append(m)
            del b, d
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                c = inter.setdefault((i, j), [0, 0])
                c[0] += int(np.count_nonzero(masks[i] & masks[j]))
                c[1] += int(np.count_nonzero(masks[i] | masks[j]))
    return info, nf0, w2, acc, inter


def _blocked_records(base, tuned, keys, name, cfg, want, want_pairs):
    from threegate.compare.metrics import _ratio_summary

    info, nf0, w2, acc, inter = _blocked(base, tuned, name, cfg.block_bytes)
    numel = math.prod(info.shape)
    results = []
    for key, st, t in zip(keys, acc, tuned, strict=True):
        if key not in want:
            continue
        ok = nf0 == 0 and st["nf1"] == 0
        rec = {
            "name": name,
            "layer_type": classify(name),
            "layer": layer_index(name),
            "shape": list(info.shape),
            "dtype": str(info.dtype),
            "numel": numel,
            "nonfinite": {"base": nf0, "tuned": st["nf1"]},
            "changed": st["changed"] if ok else None,
            "sparsity": 1.0 - st["changed"] / numel if ok and numel else None,
            "changed_rule": st["rule"] if ok else None,
            "update_fro": math.sqrt(st["d2"]) if ok else None,
            "rel_update_fro": math.sqrt(st["d2"] / w2) if ok and w2 > 0 else None,
            "k_requested": cfg.k,
            "alpha": cfg.alpha,
            "spectral_skipped": _skip_reason(name, cfg) if ok else "non-finite values",
            "blocked_rows": True,
            "measure": measure_info(cfg.dtype),
        }
        if t.info(name).dtype != info.dtype:
            rec["dtype_tuned"] = str(t.info(name).dtype)
        profiles = {}
        if ok and len(info.shape) == 2:
            rows, cols = np.concatenate(st["rows"]), st["cols"] / info.shape[0]
            rec["row_update_ratio"], rec["col_update_ratio"] = (
                _ratio_summary(rows),
                _ratio_summary(cols),
            )
            profiles = {"row_ratio": rows, "col_ratio": cols}
        results.append((key, rec, profiles))
    pairs = []
    for (i, j), (n_and, n_or) in inter.items():
        if (keys[i], keys[j]) not in want_pairs:
            continue
        p, q = acc[i]["changed"] / numel, acc[j]["changed"] / numel
        bad = nf0 or acc[i]["nf1"] or acc[j]["nf1"]
        pairs.append(
            _pair_record(
                name, keys[i], keys[j], None if bad else (n_and / n_or if n_or else None), p, q, bad
            )
        )
    return results, pairs


def _pair_record(name, a, b, jac, p, q, bad=False) -> dict:
    return {
        "name": name,
        "layer_type": classify(name),
        "layer": layer_index(name),
        "tuned_a": a,
        "tuned_b": b,
        "jaccard": None if bad else jac,
        "jaccard_random": None if bad else jaccard_baseline(p, q),
        "density_a": None if bad else p,
        "density_b": None if bad else q,
    }


def _profile_line(name: str, key: str | None, profiles: dict) -> dict:
    return {
        "name": name,
        "tuned": key,
        **{k: np.asarray(v, np.float64).tolist() for k, v in profiles.items()},
    }


def run_compare(cfg: CompareConfig, progress: Callable | None = None) -> Path:
    """Run the comparison and return the run folder (the summary is built separately from its files).

    Args:
      cfg: settings.
      progress: optional wrapper for the tensor-name iterable (e.g. a tqdm factory).

    Raises:
      CheckpointError / FormatError: unreadable inputs; MismatchError: names or shapes do not align;
      ValueError: bad settings, or `--resume` with settings that differ from the stored run.
    """
    keys = cfg.keys()
    base = open_checkpoint(cfg.base)
    tuned: list[Checkpoint] = []
    try:
        tuned.extend(open_checkpoint(t) for t in cfg.tuned)
        names = check_alignment([base, *tuned], cfg.include, cfg.exclude)
        layer, _ = choose_layer(list(names), cfg.layer)
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
        }
        out = _prepare_out(cfg, settings)
        _stream(cfg, base, tuned, keys, list(names), layer, out, progress)
    finally:
        for c in (base, *tuned):
            c.close()
    return out


def _done_sets(out: Path) -> tuple[set, set]:
    done = {(r["name"], r["tuned"]) for r in read_jsonl(out / "tensors.jsonl")}
    pairs = {(r["name"], r["tuned_a"], r["tuned_b"]) for r in read_jsonl(out / "pairs.jsonl")}
    return done, pairs


def _consensus_path(out: Path, name: str) -> Path:
    return out / "consensus" / (name.replace("/", "_") + ".npz")


def _stream(cfg, base, tuned, keys, names, layer, out, progress) -> None:
    done, done_pairs = _done_sets(out)
    all_pairs = [(keys[i], keys[j]) for i in range(len(keys)) for j in range(i + 1, len(keys))]
    it = progress(names) if progress is not None else names
    with (
        JsonlWriter(out / "tensors.jsonl") as tw,
        JsonlWriter(out / "pairs.jsonl") as pw,
        JsonlWriter(out / "profiles.jsonl") as fw,
    ):
        for name in it:
            want = {key for key in keys if (name, key) not in done}
            want_pairs = {pr for pr in all_pairs if (name, *pr) not in done_pairs}
            info = base.info(name)
            in_layer = len(info.shape) == 2 and layer is not None and layer_index(name) == layer
            need_cons = in_layer and len(keys) >= 1 and not _consensus_path(out, name).exists()
            reason = _skip_reason(name, cfg)
            big = math.prod(info.shape) * info.dtype.itemsize > cfg.block_bytes
            if not (want or want_pairs or need_cons):
                continue
            if reason is not None and big and classify(name) in ("embed", "lm_head"):
                results, pairs = _blocked_records(base, tuned, keys, name, cfg, want, want_pairs)
                for key, rec, prof in results:
                    if prof:
                        fw.write(_profile_line(name, key, prof))
                    tw.write({**rec, "tuned": key})
                for rec in pairs:
                    pw.write(rec)
                _release_heap()
                continue
            _one_tensor(
                cfg, base, tuned, keys, name, reason, want, want_pairs, need_cons, out, tw, pw, fw
            )
            _release_heap()


def _one_tensor(cfg, base, tuned, keys, name, reason, want, want_pairs, need_cons, out, tw, pw, fw):
    w0 = base.load(name)
    state = None
    masks: dict[str, np.ndarray | None] = {}
    bad: set[str] = set()
    for key, t in zip(keys, tuned, strict=True):
        needs_mask = need_cons or any(key in pr for pr in want_pairs)
        if key not in want and not needs_mask:
            continue
        w1 = t.load(name)
        if key in want:
            if state is None:
                state = prepare_base(
                    w0, cfg.k, cfg.alpha, spectral=cfg.spectral, dtype=cfg.dtype, skip_reason=reason
                )
                if state.spectrum is not None:
                    fw.write(_profile_line(name, None, {"sigma_base": state.spectrum.s}))
            res = tensor_metrics(name, w0, w1, cfg.k, cfg.alpha, base=state, dtype=cfg.dtype)
            if res.profiles:
                fw.write(_profile_line(name, key, res.profiles))
            tw.write({**res.record, "tuned": key})
            mask = res.mask
        else:
            finite = np.isfinite(w0).all() and np.isfinite(w1).all()
            mask = changed_mask(w0, w1)[0] if finite else None
        if mask is None:
            bad.add(key)
        masks[key] = mask if needs_mask else None
        del w1
    for a, b in sorted(want_pairs):
        ma, mb = masks.get(a), masks.get(b)
        if ma is None or mb is None:
            pw.write(_pair_record(name, a, b, None, 0.0, 0.0, bad=True))
            continue
        p, q = float(ma.mean()), float(mb.mean())
        pw.write(_pair_record(name, a, b, jaccard(ma, mb), p, q))
    if need_cons and not bad and masks:
        stack = [masks[k] for k in keys]
        count = np.sum(np.stack(stack), axis=0, dtype=np.uint8 if len(stack) < 256 else np.uint16)
        path = _consensus_path(out, name)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, count=count, runs=len(stack))
        os.replace(tmp, path)
