"""Per-tensor metrics of `threegate compare`: a pure function of (name, W0, W1, k, alpha), no I/O.

Shapes: `w0`, `w1` are stored arrays of one shape (bf16/f16/f32/f64); matrices are `[m, n]` (HF `[out, in]`).
The base's work (its spectrum, principal and low-magnitude masks) is done once by `prepare_base` and reused for
every tuned checkpoint. Records are JSON-ready dicts (None where a metric is undefined or skipped); arrays for
the figures (row/column update ratios, angles, singular values) come back separately in `TensorResult.profiles`.

Metrics (paper-digest §5): changed count and sparsity (Def 2.1–2.2, M1–M2), $\\|\\Delta W\\|_F/\\|W_0\\|_F$ with
$\\Delta W$ formed in float64, overlaps M10 with principal (M8), low-magnitude (M9) and
$M_{princ}\\cap M_{low}^c$ masks with their random-mask baselines, principal angles M11 (sine-accurate), NSS M12,
Weyl and Wedin ratios (Thm 3.3, Cor 3.4; paper and rigorous forms), top-k energy share of $\\Delta W$ with its
null $k^2/(mn)$, row/column update ratios M6–M7.
"""

import math
from typing import NamedTuple

import jax
import ml_dtypes
import numpy as np

from threegate.checkpoints import classify, layer_index
from threegate.compare.coords import (
    bottom_fraction_mask,
    changed_mask,
    overlap,
    profile_corr,
    top_fraction_mask,
)
from threegate.compare.scan import LowSelection, fast, low_selection, pair_scan
from threegate.compare.spectrum import SVD_METHOD, Spectrum, base_spectral, tuned_spectral
from threegate.masks import selection_count

__all__ = [
    "BaseState",
    "TensorResult",
    "delta_metrics",
    "measure_info",
    "prepare_base",
    "tensor_metrics",
]

_DTYPES = ("float32", "float64")


class BaseState(NamedTuple):
    """What the base tensor contributes to every comparison (computed once per tensor).

    Attributes:
      nonfinite: NaN/Inf count of `w0`.
      fro: $\\|W_0\\|_F$ (float64).
      k: rank used (None when no spectral work); `k_requested` as asked.
      spectrum: base `Spectrum` (None when skipped).
      principal, low: `[m, n]` masks M8, M9 (None when skipped / not a matrix; `low` is None too when
        `low_sel` stands for it).
      skipped: why spectral work was skipped (None if done).
      low_sel: M9 of a bf16 matrix as a threshold (`threegate.compare.scan.LowSelection`), or None.
      lazy: a bf16 matrix without spectral work: `nonfinite`, `fro` and M9 come from each pair's one pass
        (`threegate.compare.scan.pair_scan` with a joint histogram), not from a pass over the base alone.
    """

    nonfinite: int
    fro: float
    k: int | None
    k_requested: int
    spectrum: Spectrum | None
    principal: np.ndarray | None
    low: np.ndarray | None
    skipped: str | None
    low_sel: LowSelection | None = None
    lazy: bool = False


class TensorResult(NamedTuple):
    """One (tensor, tuned) comparison: the JSON record, arrays for figures, and the update mask."""

    record: dict
    profiles: dict[str, np.ndarray]
    mask: np.ndarray | None


def measure_info(dtype: str) -> dict:
    """Where and how the spectral work runs: dtype, precision, backend, device kind, decomposition."""
    dev = jax.devices()[0]
    return {
        "dtype": dtype,
        "precision": "highest",
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "svd_method": SVD_METHOD,
    }


def _num(x) -> float | None:
    """A finite float, else None (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _sum_sq(w0: np.ndarray, w1: np.ndarray | None = None, chunk: int = 1 << 20) -> float:
    """$\\|W_0\\|_F^2$, or $\\|W_1 - W_0\\|_F^2$ with the difference formed in float64, in chunks (bounded memory)."""
    a = w0.reshape(-1)
    b = None if w1 is None else w1.reshape(-1)
    total = 0.0
    for i in range(0, a.size, chunk):
        d = a[i : i + chunk].astype(np.float64)
        if b is not None:
            d = b[i : i + chunk].astype(np.float64) - d
        total += float(np.dot(d, d))
    return total


def _magnitude_codes(w: np.ndarray) -> np.ndarray:
    """An array ordered exactly like $|w|$ (finite `w`): the bit codes without the sign bit for 2- and 4-byte
    floats (IEEE codes of non-negative values sort like the values), else `np.abs(w)`. Half the memory of a
    float32 copy for bf16."""
    if w.dtype in (ml_dtypes.bfloat16, np.float16, np.float32):
        uint = np.dtype(f"u{w.dtype.itemsize}")
        return w.view(uint) & uint.type(np.iinfo(uint).max >> 1)
    return np.abs(w)


def _count_nonfinite(w: np.ndarray) -> int:
    return int(w.size - np.count_nonzero(np.isfinite(w)))


def _check_dtype(dtype: str) -> None:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")


def prepare_base(
    w0: np.ndarray,
    k: int,
    alpha: float,
    *,
    spectral: bool = True,
    dtype: str = "float32",
    skip_reason: str | None = None,
) -> BaseState:
    """The base tensor's share of the work: non-finite count, norm, spectrum and masks.

    Args:
      w0: stored base tensor.
      k: requested rank; clipped to $\\min(m, n) - 1$ so that $\\sigma_{k+1}$ exists.
      alpha: mask fraction for M8/M9.
      spectral: False skips the SVD-based work (the low-magnitude mask is still built for matrices).
      dtype: "float32" or "float64", the dtype of the measured products (reconstruction, angles, energy).
      skip_reason: recorded reason when the caller skips spectral work.
    """
    _check_dtype(dtype)
    w0 = np.asarray(w0)
    if w0.ndim == 2 and fast(w0):
        return _prepare_bf16(w0, k, alpha, spectral, dtype, skip_reason)
    nonfinite = _count_nonfinite(w0)
    fro = math.sqrt(_sum_sq(w0)) if nonfinite == 0 else math.nan
    if w0.ndim != 2:
        return BaseState(nonfinite, fro, None, k, None, None, None, "not a matrix")
    if nonfinite:
        return BaseState(nonfinite, fro, None, k, None, None, None, "non-finite values")
    low = bottom_fraction_mask(_magnitude_codes(w0), alpha)
    return _spectral_base(w0, k, alpha, spectral, dtype, skip_reason, nonfinite, fro, low, None)


def _spectral_base(w0, k, alpha, spectral, dtype, skip_reason, nonfinite, fro, low, low_sel):
    k_used = min(k, min(w0.shape) - 1)
    if not spectral or skip_reason is not None:
        reason = skip_reason or "--no-spectral"
        return BaseState(nonfinite, fro, None, k, None, None, low, reason, low_sel)
    if k_used < 1:
        return BaseState(nonfinite, fro, None, k, None, None, low, "min(m, n) < 2", low_sel)
    if low is None:
        low = low_sel.mask(w0)
    spec, recon = base_spectral(w0, k_used, dtype)
    principal = top_fraction_mask(recon, alpha)
    del recon
    return BaseState(nonfinite, fro, k_used, k, spec, principal, low, None, low_sel)


def _prepare_bf16(w0, k, alpha, spectral, dtype, skip_reason, lazy=True) -> BaseState:
    """`prepare_base` for a bf16 matrix: one histogram pass gives the non-finite count, $\\|W_0\\|_F$ and M9."""
    if lazy and (not spectral or skip_reason is not None):
        reason = skip_reason or "--no-spectral"
        return BaseState(0, math.nan, None, k, None, None, None, reason, None, True)
    sel, nonfinite, w2 = low_selection(w0, alpha, selection_count(alpha, w0.size))
    if nonfinite:
        return BaseState(nonfinite, math.nan, None, k, None, None, None, "non-finite values")
    return _spectral_base(w0, k, alpha, spectral, dtype, skip_reason, 0, math.sqrt(w2), None, sel)


def row_col_ratios(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column update ratios (M6, M7) of a 2-D boolean mask: `mask.mean(axis=1)`, `mask.mean(axis=0)`,
    the same float64 values from integer counts of its bytes (twice as fast as the float reduction)."""
    u8 = mask.view(np.uint8)
    rows = np.add.reduce(u8, axis=1, dtype=np.int64) / mask.shape[1]
    cols = np.add.reduce(u8, axis=0, dtype=np.int64) / mask.shape[0]
    return rows, cols


def ratio_summary(x: np.ndarray) -> dict:
    return {
        "min": _num(x.min()),
        "max": _num(x.max()),
        "mean": _num(x.mean()),
        "std": _num(x.std()),
    }


def _spectral_part(
    base: BaseState, w0: np.ndarray, w1: np.ndarray, dtype: str
) -> tuple[dict, dict]:
    """Angles, NSS, Weyl, Wedin (both forms), energy share; reuses the base spectrum."""
    k, s0 = base.k, base.spectrum.s
    m, n = w0.shape
    t = tuned_spectral(w0, w1, base.spectrum, dtype)
    spec1, e2, energy = t, t.dw_norm2, t.energy
    ang_u, ang_v = np.degrees(t.angles_u), np.degrees(t.angles_v)
    sin_max = max(t.sin_u, t.sin_v)
    ds = spec1.s - s0
    weyl_lhs = float(np.max(np.abs(ds)))
    gap = float(s0[k - 1] - s0[k])
    premise = gap > 0
    rigorous = e2 < gap
    null = k * k / (m * n)
    energy = _num(energy)
    rec = {
        "k": k,
        "sigma_k": _num(s0[k - 1]),
        "gap_k": _num(gap),
        "gap_k_rel": _num(gap / s0[k - 1]) if s0[k - 1] > 0 else None,
        "max_angle_u_deg": _num(ang_u.max()),
        "max_angle_v_deg": _num(ang_v.max()),
        "spectral_shift": _num(np.linalg.norm(ds) / np.linalg.norm(s0)) if s0[0] > 0 else None,
        "dw_norm2": _num(e2),
        "weyl_lhs": _num(weyl_lhs),
        "weyl_ratio": _num(weyl_lhs / e2) if e2 > 0 else (0.0 if weyl_lhs == 0 else None),
        "wedin_lhs": _num(sin_max),
        "wedin_premise": bool(premise),
        "wedin_ratio": _num(sin_max * gap / e2) if premise and e2 > 0 else None,
        "wedin_rigorous_premise": bool(rigorous),
        "wedin_rigorous_ratio": (_num(sin_max * (gap - e2) / e2) if rigorous and e2 > 0 else None),
        "principal_energy_fraction": energy,
        "principal_energy_null": null,
        "principal_energy_lift": _num(energy / null) if energy is not None else None,
    }
    if e2 == 0:  # ΔW = 0: same matrix, same decomposition; any angle left is rounding in `dtype`
        rec["wedin_ratio"] = 0.0 if premise else None
        rec["wedin_rigorous_ratio"] = 0.0 if rigorous else None
    profiles = {
        "angles_u_deg": ang_u,
        "angles_v_deg": ang_v,
        "sigma_tuned": spec1.s,
    }
    return rec, profiles


_SPECTRAL_KEYS = (
    "k",
    "sigma_k",
    "gap_k",
    "gap_k_rel",
    "max_angle_u_deg",
    "max_angle_v_deg",
    "spectral_shift",
    "dw_norm2",
    "weyl_lhs",
    "weyl_ratio",
    "wedin_lhs",
    "wedin_premise",
    "wedin_ratio",
    "wedin_rigorous_premise",
    "wedin_rigorous_ratio",
    "principal_energy_fraction",
    "principal_energy_null",
    "principal_energy_lift",
)
_MASK_KEYS = (
    "overlap_principal",
    "overlap_principal_random",
    "overlap_low",
    "overlap_low_random",
    "overlap_principal_not_low",
    "overlap_principal_not_low_random",
    "row_corr_principal",
    "col_corr_principal",
)


def tensor_metrics(
    name: str,
    w0: np.ndarray,
    w1: np.ndarray,
    k: int = 64,
    alpha: float = 0.5,
    *,
    base: BaseState | None = None,
    spectral: bool = True,
    dtype: str = "float32",
    skip_reason: str | None = None,
) -> TensorResult:
    """Every per-tensor metric of one (base, tuned) pair, as a JSON-ready record.

    Args:
      name: tensor name (recorded; layer type and index are derived from it by the caller).
      w0, w1: stored base and tuned tensors of one shape.
      k: requested rank (M8, M11); clipped to $\\min(m,n)-1$, recorded as `k` with `k_clipped`.
      alpha: mask fraction (M8, M9).
      base: `prepare_base(w0, ...)` to reuse across tuned checkpoints (computed here if None).
      spectral: False: sparsity, norms, low-magnitude overlap and update ratios only.
      dtype: "float32" (default, "highest" precision) or "float64" for the measured products.
      skip_reason: why spectral work is skipped (recorded).

    Returns:
      `TensorResult(record, profiles, mask)`. A tensor with a NaN/Inf entry in either checkpoint gets its
      counts in `nonfinite` and every metric None (`mask` None).
    """
    w0, w1 = np.asarray(w0), np.asarray(w1)
    if w0.shape != w1.shape:
        raise ValueError(f"{name}: shapes differ, {w0.shape} vs {w1.shape}")
    if base is None:
        base = prepare_base(w0, k, alpha, spectral=spectral, dtype=dtype, skip_reason=skip_reason)
    base, scan, nf1 = _pass(w0, w1, base, k, alpha, dtype)
    rec = _empty_record(name, w0, w1, base, nf1, k, alpha, dtype)
    if base.nonfinite or nf1:
        rec["spectral_skipped"] = "non-finite values"
        return TensorResult(rec, {}, None)
    if scan is not None:
        mask, rule, changed, dfro = scan.mask, "bits", scan.changed, math.sqrt(scan.d2)
    else:
        mask, rule = changed_mask(w0, w1)
        changed = int(np.count_nonzero(mask))
        dfro = math.sqrt(_sum_sq(w0, w1))
    rec.update(
        changed=changed,
        sparsity=1.0 - changed / w0.size if w0.size else None,
        changed_rule=rule,
        update_fro=dfro,
        rel_update_fro=_num(dfro / base.fro) if base.fro > 0 else None,
    )
    if w0.ndim != 2:
        return TensorResult(rec, {}, mask)
    profiles = _mask_metrics(rec, w0, base, scan, mask, changed)
    if base.spectrum is not None:
        rec["k_clipped"] = base.k != k
        part, extra = _spectral_part(base, w0, w1, dtype)
        rec.update(part)
        profiles.update(extra)
    return TensorResult(rec, profiles, mask)


def _pass(w0: np.ndarray, w1: np.ndarray, base: BaseState, k: int, alpha: float, dtype: str):
    """The one pass over the pair where it can be fused (`pair_scan`: bits, sums, low-magnitude hits), else
    the tuned tensor's non-finite count. Returns (base completed by the pass, the scan or None, tuned
    non-finite count)."""
    if base.lazy and not fast(w1):  # mixed dtypes: the base's own pass after all
        base = _prepare_bf16(w0, k, alpha, False, dtype, base.skipped, lazy=False)
    if base.lazy:
        scan = pair_scan(w0, w1, count=selection_count(alpha, w0.size))
        fro = math.sqrt(scan.w2) if scan.nonfinite0 == 0 else math.nan
        return base._replace(nonfinite=scan.nonfinite0, fro=fro), scan, scan.nonfinite1
    if base.low_sel is not None and base.nonfinite == 0 and fast(w1):
        scan = pair_scan(w0, w1, base.low_sel)
        return base, scan, scan.nonfinite1
    return base, None, _count_nonfinite(w1)


def _empty_record(
    name, w0, w1, base: BaseState, nf1: int, k: int, alpha: float, dtype: str
) -> dict:
    """The record's identity and settings, every metric key present and None."""
    rec: dict = {
        "name": name,
        "layer_type": classify(name),
        "layer": layer_index(name),
        "shape": list(w0.shape),
        "dtype": str(w0.dtype),
        "numel": int(w0.size),
        "nonfinite": {"base": base.nonfinite, "tuned": nf1},
    }
    if w1.dtype != w0.dtype:
        rec["dtype_tuned"] = str(w1.dtype)
    keys = ("changed", "sparsity", "changed_rule", "rel_update_fro", "update_fro")
    if w0.ndim == 2:
        keys += ("row_update_ratio", "col_update_ratio", *_MASK_KEYS, *_SPECTRAL_KEYS)
    rec.update(dict.fromkeys(keys))
    rec.update(
        k_requested=k,
        k_clipped=False,
        alpha=alpha,
        spectral_skipped=base.skipped,
        measure=measure_info(dtype),
    )
    return rec


def _mask_metrics(rec: dict, w0, base: BaseState, scan, mask: np.ndarray, changed: int) -> dict:
    """The update mask's row/column ratios and its overlaps with M_low, M_princ and M_princ ∖ M_low (each
    beside its random baseline) into `rec`; returns the row and column profiles."""
    rows, cols = row_col_ratios(mask)
    rec.update(row_update_ratio=ratio_summary(rows), col_update_ratio=ratio_summary(cols))
    if base.low is not None:
        rec["overlap_low"], rec["overlap_low_random"] = overlap(base.low, mask)
    elif scan is not None:  # |M_low ∩ M| / |M| from the pass; baseline |M_low| / mn (M10)
        rec["overlap_low"] = scan.low_hits / changed if changed else None
        rec["overlap_low_random"] = scan.low_count / w0.size
    elif base.low_sel is not None:
        rec["overlap_low"], rec["overlap_low_random"] = overlap(base.low_sel.mask(w0), mask)
    if base.spectrum is not None:
        p = base.principal
        rec["overlap_principal"], rec["overlap_principal_random"] = overlap(p, mask)
        both = p & ~base.low
        rec["overlap_principal_not_low"], rec["overlap_principal_not_low_random"] = overlap(
            both, mask
        )
        rec["row_corr_principal"] = profile_corr(rows, p.mean(axis=1))
        rec["col_corr_principal"] = profile_corr(cols, p.mean(axis=0))
    return {"row_ratio": rows, "col_ratio": cols}


def delta_metrics(w0: np.ndarray, dw: np.ndarray, base: BaseState, dtype: str = "float32") -> dict:
    """The geometry of an exact update $\\Delta W$ (a LoRA adapter's $(\\alpha/r)BA$, float32) before any
    rounding to the stored dtype: $\\|\\Delta W\\|_F/\\|W_0\\|_F$; with the base spectrum, the top-k energy
    share $\\|U_k^\\top\\Delta W V_k\\|_F^2/\\|\\Delta W\\|_F^2$ (float64) with its null $k^2/(mn)$, and the
    principal angles and NSS of $W_0 + \\Delta W$ formed in float64 (M11, M12; the paper's Sec. 5.2 question for
    an adapter)."""
    d = np.asarray(dw, np.float64)
    w = np.asarray(w0, np.float64)
    dfro = float(np.linalg.norm(d))
    rec: dict = {
        "update_fro": dfro,
        "rel_update_fro": _num(dfro / base.fro) if base.fro and base.fro > 0 else None,
    }
    if base.spectrum is None or d.ndim != 2:
        return rec
    spec, k = base.spectrum, base.k
    m, n = d.shape
    core = spec.u.T @ d @ spec.v
    energy = float(np.sum(core * core)) / (dfro * dfro) if dfro > 0 else None
    null = k * k / (m * n)
    t = tuned_spectral(w, w + d, spec, dtype)
    s0 = spec.s
    rec.update(
        k=k,
        principal_energy_fraction=_num(energy),
        principal_energy_null=null,
        principal_energy_lift=_num(energy / null) if energy is not None else None,
        max_angle_u_deg=_num(np.degrees(t.angles_u).max()),
        max_angle_v_deg=_num(np.degrees(t.angles_v).max()),
        spectral_shift=_num(np.linalg.norm(t.s - s0) / np.linalg.norm(s0)) if s0[0] > 0 else None,
        dw_norm2=_num(t.dw_norm2),
    )
    return rec
