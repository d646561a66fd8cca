"""One streaming pass over a (base, tuned) pair of bf16 tensors: the update mask and its sums, at memory speed.

`pair_scan(w0, w1, low)` computes in one chunked pass (buffers reused, so no large temporaries): the update
mask $M$ (Def 2.1 by the one rule, `threegate.stored.codes_unchanged`: stored codes differ, $\\pm0$ equal),
its count, $\\|W_0\\|_F^2$ and $\\|W_1 - W_0\\|_F^2$ with every term formed exactly in float64 (bf16 -> float32
is a bit placement, float32 -> float64 exact), non-finite counts, and, given a `LowSelection`,
$|M_{low}\\cap M|$ without building $M_{low}$.

`low_selection(w0, alpha)` is M9 ($M_{low}$, the $\\lfloor\\alpha mn\\rfloor$ entries of smallest $|W_0|$, ties to
the lower flat index: `threegate.masks.bottom_fraction_mask`) as a threshold: a histogram of the 15-bit
magnitude codes (they sort like $|w|$) gives the code $c^*$ of the last selected entry and how many of its ties
are taken, so $M_{low} = \\{c < c^*\\} \\cup \\{c = c^*, i \\le i^*\\}$ with $i^*$ the flat index of the last taken
tie. `LowSelection.mask()` builds the mask itself where the spectral work needs it; the tests check it equal
to `bottom_fraction_mask` entry for entry. Only bf16 takes this path (`fast(w)`); other dtypes use the generic
functions of `threegate.compare.coords`.
"""

import math
import os
from typing import NamedTuple

import ml_dtypes
import numpy as np

from threegate.stored import codes_unchanged

__all__ = ["LowSelection", "PairScan", "fast", "low_selection", "pair_scan"]

_BF16 = np.dtype(ml_dtypes.bfloat16)
_CHUNK = 1 << 16  # elements per step: the buffers stay in cache
_BLOCK = (
    1 << 22
)  # elements per thread task; sums are added block by block in order (thread-count free)
_POOL = None


def _pool():
    """The threads of the pass (NumPy's loops release the GIL): one per core this process may use, at most 4."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        _POOL = ThreadPoolExecutor(
            max_workers=max(1, min(4, cores or 1)), thread_name_prefix="tg-scan"
        )
    return _POOL


_MAG = np.uint16(0x7FFF)
_EXP = np.uint16(0x7F80)


def _sumsq(x: np.ndarray, y: np.ndarray) -> float:
    """$\\sum_i x_i y_i$ in float64 without BLAS: a threaded `ddot` per 64k-element chunk stalls on a busy machine
    (86 ns per element measured with the other core taken, against 0.6 ns for `einsum`)."""
    return np.einsum("i,i->", x, y)


def fast(*ws: np.ndarray) -> bool:
    """True when every array is bf16 (the streaming path applies)."""
    return all(np.asarray(w).dtype == _BF16 for w in ws)


class LowSelection(NamedTuple):
    """M9 as a threshold on magnitude codes: entries with code < `code`, and those equal to `code` up to flat
    index `last_tie` (inclusive; -1: none). `count` entries in all, of `size`."""

    code: int
    last_tie: int
    count: int
    size: int
    shape: tuple[int, ...]

    def mask(self, w0: np.ndarray) -> np.ndarray:
        """The boolean mask `[shape]` of the selection (for the spectral work's $M_{princ}\\cap M_{low}^c$)."""
        codes = np.asarray(w0).view(np.uint16).reshape(-1) & _MAG
        out = codes < self.code
        if self.last_tie >= 0:
            head = codes[: self.last_tie + 1]
            out[: self.last_tie + 1] |= head == self.code
        return out.reshape(self.shape)


class PairScan(NamedTuple):
    """What one pass over a pair gives (see the module docstring)."""

    mask: np.ndarray
    changed: int
    w2: float
    d2: float
    nonfinite0: int
    nonfinite1: int
    low_hits: int | None
    low_count: int | None = None


def _u16(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w).view(np.uint16).reshape(-1)


def _count_nonfinite(u: np.ndarray) -> int:
    """Entries whose exponent bits are all ones (Inf, NaN), chunked."""
    n = 0
    for i in range(0, u.size, _CHUNK):
        n += int(np.count_nonzero((u[i : i + _CHUNK] & _EXP) == _EXP))
    return n


#: $|w|^2$ of every finite 15-bit magnitude code (bf16 -> float32 bits -> float64; squares exact).
_SQUARES = (np.arange(int(_EXP), dtype=np.uint32) << 16).view(np.float32).astype(np.float64) ** 2


def low_selection(
    w0: np.ndarray, alpha: float, count: int
) -> tuple[LowSelection | None, int, float]:
    """M9 of bf16 `w0` with `count` = $\\lfloor\\alpha\\,mn\\rfloor$ entries, with the non-finite count and
    $\\|W_0\\|_F^2$, from one histogram of magnitude codes: $\\sum_c h_c\\,|w(c)|^2$ (each product exact).

    Returns `(selection, nonfinite, sum of squares)`; the selection is None when `w0` has a NaN/Inf.
    """
    u = _u16(w0)
    hist = np.zeros(1 << 15, np.int64)
    buf = np.empty(_CHUNK, np.uint16)
    for i in range(0, u.size, _CHUNK):
        x = u[i : i + _CHUNK]
        c = buf[: x.size]
        np.bitwise_and(x, _MAG, out=c)
        hist += np.bincount(c, minlength=1 << 15)
    nonfinite = int(hist[int(_EXP) :].sum())
    if nonfinite:
        return None, nonfinite, math.nan
    w2 = float(np.dot(hist[: int(_EXP)].astype(np.float64), _SQUARES))
    if count == 0:
        return LowSelection(0, -1, 0, u.size, w0.shape), 0, w2
    cum = np.cumsum(hist)
    code = int(np.searchsorted(cum, count))  # first code whose cumulative count reaches `count`
    take = count - (
        int(cum[code - 1]) if code > 0 else 0
    )  # ties of `code` taken, lowest indices first
    seen = 0
    for i in range(0, u.size, _CHUNK):
        c = u[i : i + _CHUNK] & _MAG
        hits = np.flatnonzero(c == code)
        if seen + hits.size >= take:
            sel = LowSelection(code, i + int(hits[take - seen - 1]), count, u.size, w0.shape)
            return sel, 0, w2
        seen += hits.size
    raise AssertionError("histogram and scan disagree")  # pragma: no cover


def _selection_from(hist: np.ndarray, count: int, size: int, shape) -> tuple[int, int]:
    """(code, ties taken) of M9 from the magnitude-code histogram: the code of the `count`-th smallest entry."""
    cum = np.cumsum(hist)
    code = int(np.searchsorted(cum, count))
    return code, count - (int(cum[code - 1]) if code > 0 else 0)


def pair_scan(
    w0: np.ndarray,
    w1: np.ndarray,
    low: LowSelection | None = None,
    count: int | None = None,
) -> PairScan:
    """The update mask and sums of bf16 `w0`, `w1` (same shape) in one chunked pass (module docstring).

    $\\Delta w = w_1 - w_0$ is formed in float32, which is exact whenever $|w_1|$ and $|w_0|$ are within a factor
    $2^{16}$ of each other or one is zero (both have 8-bit significands: the difference needs at most
    $16 + 8$ bits), i.e. for every fine-tuning update; otherwise that one term is rounded once ($2^{-24}$
    relative). Squares and sums are float64.

    M9: with `low` (the base's selection) its hits are counted in the pass; with `count` instead, one joint
    histogram of (magnitude code of $w_0$, changed) gives the base's histogram — hence $\\|W_0\\|_F^2$, its
    non-finite count and the selection of `count` entries — and the changed entries per code, hence
    $|M_{low}\\cap M|$ (the taken ties of the threshold code counted in a second pass over a prefix only).
    """
    a, b = _u16(w0), _u16(w1)
    n = a.size
    mask = np.empty(n, bool)
    need_w2 = low is None and count is None
    blocks = [(i, min(n, i + _BLOCK)) for i in range(0, n, _BLOCK)] or [(0, 0)]
    job = lambda r: _scan_range(a, b, mask, r[0], r[1], low, count is not None, need_w2)  # noqa: E731
    parts = list(_pool().map(job, blocks)) if len(blocks) > 1 else [job(blocks[0])]
    changed = sum(q[0] for q in parts)
    w2 = math.fsum(q[1] for q in parts) if need_w2 else math.nan  # block sums in block order
    d2 = math.fsum(q[2] for q in parts)
    hits = sum(q[3] for q in parts)
    joint = None if count is None else np.sum([q[4] for q in parts], axis=0)
    nf0 = 0
    if joint is not None:
        hist = joint[: 1 << 15] + joint[1 << 15 :]
        nf0 = int(hist[int(_EXP) :].sum())
        if nf0 == 0:
            w2 = float(np.dot(hist[: int(_EXP)].astype(np.float64), _SQUARES))
            hits = _joint_hits(a, mask, joint, count) if count else 0
    elif not (low is not None or math.isfinite(w2)):
        nf0 = _count_nonfinite(a)
    nf1 = 0 if nf0 == 0 and math.isfinite(d2) else _count_nonfinite(b)
    return PairScan(
        mask.reshape(np.shape(w0)),
        changed,
        w2,
        d2,
        nf0,
        nf1,
        hits if (low is not None or joint is not None) and nf0 == 0 else None,
        count if joint is not None else (low.count if low is not None else None),
    )


def _joint_hits(a: np.ndarray, mask: np.ndarray, joint: np.ndarray, count: int) -> int:
    """$|M_{low}\\cap M|$ from the joint histogram: changed entries of codes below the threshold code, plus
    the changed ones among the taken ties (the first `take` entries of that code in flat order)."""
    hist = joint[: 1 << 15] + joint[1 << 15 :]
    code, take = _selection_from(hist, count, a.size, None)
    below = int(joint[(1 << 15) : (1 << 15) + code].sum())
    seen = tie_hits = 0
    for i in range(0, a.size, _CHUNK):
        ties = np.flatnonzero((a[i : i + _CHUNK] & _MAG) == code)
        if seen + ties.size >= take:
            return below + tie_hits + int(np.count_nonzero(mask[i + ties[: take - seen]]))
        tie_hits += int(np.count_nonzero(mask[i + ties]))
        seen += ties.size
    raise AssertionError("histogram and scan disagree")  # pragma: no cover


def _scan_range(a, b, mask, lo, hi, low, with_joint, need_w2):
    """The pass over flat entries `lo:hi` (module docstring): (changed, w2, d2, low hits, joint histogram)."""
    hi_a = np.zeros(
        2 * _CHUNK, np.uint16
    )  # little-endian float32 words: bf16 bits in the high half
    hi_b = np.zeros(2 * _CHUNK, np.uint16)
    f_a, f_b = hi_a.view(np.float32), hi_b.view(np.float32)
    d64, a64 = np.empty(_CHUNK), np.empty(_CHUNK)
    t16 = np.empty(_CHUNK, np.uint16)
    tb = np.empty(_CHUNK, bool)
    joint = np.zeros(1 << 16, np.int64) if with_joint else None
    changed, w2, d2, hits = 0, 0.0, 0.0, 0
    for i in range(lo, hi, _CHUNK):
        x, y = a[i : min(hi, i + _CHUNK)], b[i : min(hi, i + _CHUNK)]
        k = x.size
        m, t, s = mask[i : i + k], t16[:k], tb[:k]
        np.logical_not(codes_unchanged(x, y), out=m)  # Def 2.1, the rule of `threegate.stored`
        changed += int(np.count_nonzero(m))
        hi_a[1 : 2 * k : 2] = x
        hi_b[1 : 2 * k : 2] = y
        fa, fb = f_a[:k], f_b[:k]
        if need_w2:
            xa = a64[:k]
            np.copyto(xa, fa)
            w2 += float(_sumsq(xa, xa))
        np.subtract(fb, fa, out=fb)
        xd = d64[:k]
        np.copyto(xd, fb)
        d2 += float(_sumsq(xd, xd))
        if joint is not None:  # key = magnitude code | changed << 15
            np.bitwise_and(x, _MAG, out=t)
            np.bitwise_or(t, m.view(np.uint8).astype(np.uint16) << 15, out=t)
            joint += np.bincount(t, minlength=1 << 16)
        elif low is not None:
            np.bitwise_and(x, _MAG, out=t)
            np.less(t, low.code, out=s)
            np.logical_and(s, m, out=s)
            hits += int(np.count_nonzero(s))
            if i <= low.last_tie:
                stop = min(k, low.last_tie - i + 1)
                hits += int(np.count_nonzero((t[:stop] == low.code) & m[:stop]))
    return changed, w2, d2, hits, joint
