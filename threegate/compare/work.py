"""The unit of work of `threegate compare`: one tensor (or one row block of a large one), all tuned checkpoints.

The serial driver (`threegate.compare.run`) and the Ray driver (`threegate.compare.distributed`) call the same
three functions, so a record does not depend on where it was computed:

* `tensor_unit(cfg, keys, base, tuned, job, out)`: the records of one tensor (`UnitResult`); it writes the
  tensor's consensus map (`out/consensus/NAME.npz`, atomically) itself, so the only thing a worker returns is
  small (records and the 1-D profiles of the figures).
* `block_unit(base, tuned, name, start, stop)`: the bitwise pass over rows `start:stop` of a large non-spectral
  matrix (embedding / `lm_head`): counts and sums (`BlockPartial`).
* `finish_blocked(cfg, keys, job, info, tuned_dtypes, partials)`: the records of a blocked tensor from its
  partials, merged in row order. Sums of squares are added block after block from 0.0 in both drivers, so the
  floating-point result is the same whatever worker computed which block.

`Job` says what a unit must produce for one name (what `--resume` has not yet written). `run_tensor` and
`run_block` run a unit and return it with its cost (`UnitCost`: wall and CPU seconds, bytes read, host and process), which the drivers log
to `costs.jsonl`, never into the records.
"""

import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from threegate.checkpoints import Checkpoint, TensorInfo
from threegate.checkpoints.arch import View
from threegate.compare.coords import changed_mask, jaccard, jaccard_baseline
from threegate.compare.metrics import (
    delta_metrics,
    measure_info,
    prepare_base,
    ratio_summary,
    row_col_ratios,
    tensor_metrics,
)
from threegate.compare.npz import save_npz
from threegate.compare.scan import fast, pair_scan

__all__ = [
    "BlockPartial",
    "Job",
    "UnitCost",
    "UnitResult",
    "block_ranges",
    "block_unit",
    "consensus_path",
    "finish_blocked",
    "pair_record",
    "profile_line",
    "run_block",
    "run_tensor",
    "tensor_unit",
]


class Job(NamedTuple):
    """What is still to be computed for one tensor name.

    Attributes:
      name: tensor name.
      want: tuned keys (resolved paths) whose tensor record is missing.
      want_pairs: (key_a, key_b) pairs, a before b in the command line, whose pair record is missing.
      need_cons: the tensor is a matrix of the chosen layer and its consensus map is missing.
      skip: why spectral work is skipped (None: it is done).
      blocked: a large non-spectral embedding/`lm_head` matrix, read in row blocks.
      views: how the stored tensor is analysed (`threegate.checkpoints.arch.View`: one, or the parts of a
        fused matrix / the experts of a stacked one), each giving its own records.
    """

    name: str
    want: frozenset[str]
    want_pairs: frozenset[tuple[str, str]]
    need_cons: bool
    skip: str | None
    blocked: bool
    views: tuple[View, ...] = ()

    def all_views(self) -> tuple[View, ...]:
        """`views`, or the stored tensor as one view of its name-based type."""
        if self.views:
            return self.views
        from threegate.checkpoints import classify, layer_index

        return (View(self.name, self.name, classify(self.name), layer_index(self.name)),)


class UnitResult(NamedTuple):
    """The lines a unit adds to `tensors.jsonl`, `pairs.jsonl` and `profiles.jsonl` (tensor records carry
    `tuned`)."""

    tensors: list[dict]
    pairs: list[dict]
    profiles: list[dict]


class BlockPartial(NamedTuple):
    """Counts over one row block: base non-finite count and $\\sum w_0^2$; per tuned checkpoint the changed and
    non-finite counts, $\\sum (w_1 - w_0)^2$, the rows' update ratios, the columns' changed counts and the rule;
    per pair (i, j) of tuned checkpoints $|A\\cap B|$ and $|A\\cup B|$ of the update masks."""

    nonfinite: int
    w2: float
    tuned: list[dict]
    inter: dict[tuple[int, int], tuple[int, int]]


class UnitCost(NamedTuple):
    """Where and how long one unit ran (logged to `costs.jsonl`)."""

    name: str
    kind: str
    rows: list[int] | None
    wall_s: float
    cpu_s: float
    bytes_read: int
    host: str
    pid: int


def consensus_path(out: Path, name: str) -> Path:
    """Where the consensus count map of `name` goes."""
    return out / "consensus" / (name.replace("/", "_") + ".npz")


def pair_record(view: View, a, b, jac, p, q, bad=False) -> dict:
    """A `pairs.jsonl` line: Jaccard of the update masks of `a` and `b` (M3) and its baseline (M4)."""
    return {
        "name": view.name,
        "layer_type": view.layer_type,
        "layer": view.layer,
        "expert": view.expert,
        "tuned_a": a,
        "tuned_b": b,
        "jaccard": None if bad else jac,
        "jaccard_random": None if bad else jaccard_baseline(p, q),
        "density_a": None if bad else p,
        "density_b": None if bad else q,
    }


def profile_line(name: str, key: str | None, profiles: dict) -> dict:
    """A `profiles.jsonl` line (key None: the base's singular values)."""
    return {
        "name": name,
        "tuned": key,
        **{k: np.asarray(v, np.float64) for k, v in profiles.items()},
    }


def tensor_unit(
    cfg, keys: list[str], base: Checkpoint, tuned: list[Checkpoint], job: Job, out: Path
) -> UnitResult:
    """All records of one stored tensor: for each of its views (the tensor, or the parts of a fused one) base
    work once, then each tuned checkpoint; masks kept only for pairs and the consensus maps (written to
    `consensus_path(out, view.name)`)."""
    res = UnitResult([], [], [])
    views = job.all_views()
    w0_stored = base.load(job.name)
    w0s = [v.take(w0_stored) for v in views]
    del w0_stored
    states: list = [None] * len(views)
    masks: list[dict[str, np.ndarray | None]] = [{} for _ in views]
    bad: set[str] = set()
    for key, t in zip(keys, tuned, strict=True):
        needs_mask = job.need_cons or any(key in pr for pr in job.want_pairs)
        if key not in job.want and not needs_mask:
            continue
        w1_stored = t.load(job.name)
        delta = t.delta(job.name) if key in job.want and hasattr(t, "delta") else None
        for i, (view, w0) in enumerate(zip(views, w0s, strict=True)):
            w1 = view.take(w1_stored)
            if key in job.want:
                if states[i] is None:
                    states[i] = prepare_base(
                        w0,
                        cfg.k,
                        cfg.alpha,
                        spectral=cfg.spectral,
                        dtype=cfg.dtype,
                        skip_reason=job.skip,
                    )
                    if states[i].spectrum is not None:
                        res.profiles.append(
                            profile_line(view.name, None, {"sigma_base": states[i].spectrum.s})
                        )
                r = tensor_metrics(
                    view.name, w0, w1, cfg.k, cfg.alpha, base=states[i], dtype=cfg.dtype
                )
                if r.profiles:
                    res.profiles.append(profile_line(view.name, key, r.profiles))
                rec = {**r.record, **view.fields(), "tuned": key}
                if (
                    delta is not None
                ):  # a LoRA adapter: the exact ΔW's geometry beside the stored one
                    rec["adapter"] = {
                        **t.lora_info(job.name),
                        **delta_metrics(w0, view.take(delta), states[i], cfg.dtype),
                    }
                res.tensors.append(rec)
                mask = r.mask
            else:
                finite = np.isfinite(w0).all() and np.isfinite(w1).all()
                mask = changed_mask(w0, w1)[0] if finite else None
            if mask is None:
                bad.add(key)
            masks[i][key] = mask if needs_mask else None
            del w1
        del w1_stored
    for view, vm in zip(views, masks, strict=True):
        for a, b in sorted(job.want_pairs):
            ma, mb = vm.get(a), vm.get(b)
            if ma is None or mb is None:
                res.pairs.append(pair_record(view, a, b, None, 0.0, 0.0, bad=True))
                continue
            p, q = float(ma.mean()), float(mb.mean())
            res.pairs.append(pair_record(view, a, b, jaccard(ma, mb), p, q))
        if job.need_cons and not bad and vm and len(view.shape(base.info(job.name).shape)) == 2:
            _write_consensus(out, view.name, [vm[k] for k in keys])
    return res


def _write_consensus(out: Path, name: str, stack: list[np.ndarray]) -> None:
    """The consensus count map (M5) of one matrix, written atomically."""
    count = np.sum(np.stack(stack), axis=0, dtype=np.uint8 if len(stack) < 256 else np.uint16)
    path = consensus_path(out, name)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # not *.npz: never read as a map
    with open(tmp, "wb") as f:
        save_npz(f, count=count, runs=np.asarray(len(stack)))
    os.replace(tmp, path)


def block_ranges(info: TensorInfo, block_bytes: int) -> list[tuple[int, int]]:
    """Row ranges of the blocked pass: as many rows as fit `block_bytes` of float64 copies (at least one)."""
    rows = info.shape[0]
    per_row = max(1, math.prod(info.shape[1:]) * 8)  # the block's float64 copies dominate
    step = max(1, block_bytes // per_row)
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


def _nonfinite(a: np.ndarray) -> int:
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def block_unit(
    base: Checkpoint, tuned: list[Checkpoint], name: str, start: int, stop: int
) -> BlockPartial:
    """The bitwise pass, norms and update ratios over rows `start:stop` of `name` (every tuned checkpoint)."""
    a = base.load_rows(name, start, stop)
    a64 = None
    w2 = nf0 = None
    per_tuned, masks = [], []
    for t in tuned:
        b = t.load_rows(name, start, stop)
        if fast(a, b):  # one streaming pass (threegate.compare.scan)
            sc = pair_scan(a, b)
            m, rule, d2, changed, nf1 = sc.mask, "bits", sc.d2, sc.changed, sc.nonfinite1
            w2, nf0 = (sc.w2, sc.nonfinite0) if w2 is None else (w2, nf0)
        else:
            if a64 is None:
                a64 = a.astype(np.float64).ravel()
            m, rule = changed_mask(a, b)
            d = b.astype(np.float64).ravel() - a64
            d2, changed, nf1 = float(np.dot(d, d)), int(np.count_nonzero(m)), _nonfinite(b)
            del d
        per_tuned.append(
            dict(
                nf1=nf1,
                d2=d2,
                changed=changed,
                rule=rule,
                rows=row_col_ratios(m)[0] if m.ndim == 2 else None,
                cols=np.add.reduce(m.view(np.uint8), axis=0, dtype=np.int64)
                if m.ndim == 2
                else None,
            )
        )
        masks.append(m)
        del b
    inter = {
        (i, j): (
            int(np.count_nonzero(masks[i] & masks[j])),
            int(np.count_nonzero(masks[i] | masks[j])),
        )
        for i in range(len(masks))
        for j in range(i + 1, len(masks))
    }
    if w2 is None:
        a64 = a.astype(np.float64).ravel() if a64 is None else a64
        w2 = float(np.dot(a64, a64))
    return BlockPartial(_nonfinite(a) if nf0 is None else nf0, w2, per_tuned, inter)


def _merge(partials: list[BlockPartial], n_tuned: int):
    """Partials merged in row order: totals per tuned checkpoint and per pair."""
    acc = [dict(changed=0, nf1=0, d2=0.0, rows=[], cols=0, rule="bits") for _ in range(n_tuned)]
    nf0, w2, inter = 0, 0.0, {}
    for part in partials:
        nf0 += part.nonfinite
        w2 += part.w2
        for st, bt in zip(acc, part.tuned, strict=True):
            st["nf1"] += bt["nf1"]
            st["d2"] += bt["d2"]
            st["changed"] += bt["changed"]
            st["rule"] = bt["rule"]
            if bt["rows"] is not None:
                st["rows"].append(bt["rows"])
                st["cols"] = st["cols"] + bt["cols"]
        for ij, (n_and, n_or) in part.inter.items():
            c = inter.setdefault(ij, [0, 0])
            c[0] += n_and
            c[1] += n_or
    return nf0, w2, acc, inter


def finish_blocked(
    cfg,
    keys: list[str],
    job: Job,
    info: TensorInfo,
    tuned_dtypes: list[np.dtype],
    partials: list[BlockPartial],
) -> UnitResult:
    """The records of a blocked tensor from its row-block partials (in row order)."""
    name = job.name
    view = job.all_views()[0]
    nf0, w2, acc, inter = _merge(partials, len(keys))
    numel = math.prod(info.shape)
    res = UnitResult([], [], [])
    for key, st, dt in zip(keys, acc, tuned_dtypes, strict=True):
        if key not in job.want:
            continue
        ok = nf0 == 0 and st["nf1"] == 0
        rec = {
            "name": name,
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
            "spectral_skipped": job.skip if ok else "non-finite values",
            "blocked_rows": True,
            "measure": measure_info(cfg.dtype),
            **view.fields(),
        }
        if dt != info.dtype:
            rec["dtype_tuned"] = str(dt)
        if ok and len(info.shape) == 2:
            rows, cols = np.concatenate(st["rows"]), st["cols"] / info.shape[0]
            rec["row_update_ratio"] = ratio_summary(rows)
            rec["col_update_ratio"] = ratio_summary(cols)
            res.profiles.append(profile_line(name, key, {"row_ratio": rows, "col_ratio": cols}))
        res.tensors.append({**rec, "tuned": key})
    for (i, j), (n_and, n_or) in inter.items():
        if (keys[i], keys[j]) not in job.want_pairs:
            continue
        p, q = acc[i]["changed"] / numel, acc[j]["changed"] / numel
        bad = bool(nf0 or acc[i]["nf1"] or acc[j]["nf1"])
        jac = None if bad else (n_and / n_or if n_or else None)
        res.pairs.append(pair_record(view, keys[i], keys[j], jac, p, q, bad))
    return res


def _bytes(
    base: Checkpoint, tuned: list[Checkpoint], name: str, rows: tuple[int, int] | None
) -> int:
    info = base.info(name)
    size = math.prod(info.shape)
    if rows is not None:
        size = size // info.shape[0] * (rows[1] - rows[0])
    return size * sum(c.info(name).dtype.itemsize for c in (base, *tuned))


def _timed(fn: Callable[[], Any], base, tuned, name, rows) -> tuple[Any, UnitCost]:
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    cost = UnitCost(
        name=name,
        kind="tensor" if rows is None else "block",
        rows=None if rows is None else list(rows),
        wall_s=time.perf_counter() - t0,
        cpu_s=time.process_time() - c0,
        bytes_read=_bytes(base, tuned, name, rows),
        host=platform.node(),
        pid=os.getpid(),
    )
    return value, cost


def run_tensor(
    cfg, keys: list[str], base: Checkpoint, tuned: list[Checkpoint], job: Job, out: Path
) -> tuple[UnitResult, UnitCost]:
    """`tensor_unit` with its cost (wall and CPU seconds of this process, bytes read, host, pid)."""
    return _timed(
        lambda: tensor_unit(cfg, keys, base, tuned, job, out), base, tuned, job.name, None
    )


def run_block(
    base: Checkpoint, tuned: list[Checkpoint], name: str, start: int, stop: int
) -> tuple[BlockPartial, UnitCost]:
    """`block_unit` with its cost."""
    return _timed(
        lambda: block_unit(base, tuned, name, start, stop), base, tuned, name, (start, stop)
    )
