"""The paper's checkpoint experiments on a set of runs from one base (digest §5, §7; Tables 1–2, Figs 2–5).

`analyse(base, runs, out)` is model-agnostic (HF Llama tensor names; any number of layers) and is built on
`threegate compare`: every per-tensor number comes from `run_compare` / `summarize`, never re-derived here.

* final checkpoints: one compare of the RL runs' last checkpoints (`compare_rl/`: per-tensor metrics, RL-pair
  Jaccard, RL consensus maps) and one of the SFT runs' (`compare_sft/`);
* intermediate checkpoints: per RL run, a compare of its checkpoints restricted to the chosen layer, without
  spectral work (`temporal_<run>/`: update masks and row/column ratios over time, Fig 3).

From these it builds Table 1 (bf16 sparsity, all and linear), Table 2 (chosen layer, per projection type: mean
pairwise Jaccard of RL update masks, Bernoulli baseline $pq/(p+q-pq)$, ratio), the consensus summary (M5, with
the independent-runs null of unanimity $\\prod_r p_r / (1-\\prod_r(1-p_r))$), the stability of the smoothed
row/column ratio profiles across checkpoints (Pearson correlation, null sd $1/\\sqrt n$), per-layer max principal
angle and NSS (M11, M12), overlaps M10 with their random baselines, and Gate II on the real updates (Wedin's
bound in the paper's and the rigorous form, Weyl, $\\|\\Delta W\\|_2/\\gamma_k$); then the paper's claims with
verdicts (`threegate.claims`). `study.json` in `out` holds the returned dict.
"""

import dataclasses
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from threegate.checkpoints import LINEAR_TYPES
from threegate.compare import CompareConfig, run_compare, summarize
from threegate.compare.coords import profile_corr
from threegate.compare.summary import load_profiles
from threegate.masks import moving_average
from threegate.records import read_jsonl, to_jsonable, write_json
from threegate.study.claims import study_claims

__all__ = ["Run", "StudyConfig", "analyse"]

#: Short names of the projection types, in the paper's Table 2 order.
SHORT = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "o_proj": "o",
    "gate_proj": "gate",
    "up_proj": "up",
    "down_proj": "down",
}


class Run(NamedTuple):
    """One fine-tuning run from the base.

    Attributes:
      name: label (unique within a study).
      kind: "rl" or "sft".
      checkpoints: checkpoint folders or files in step order; the last one is the run's final checkpoint.
    """

    name: str
    kind: Literal["rl", "sft"]
    checkpoints: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Settings of an analysis.

    Attributes:
      k: rank of the principal subspaces and of $M_{princ}$ (clipped per tensor to $\\min(m,n)-1$; recorded).
      alpha: fraction of $M_{princ}$ and $M_{low}$.
      layer: the block of Table 2 and Figs 2–3 (None: the middle block), as `threegate compare --layer`.
      head_dim: head boundaries of Fig 3 (None: from the checkpoint's config.json).
      smooth: moving-average width of the ratio profiles (the paper's 3-step smoothing).
      dtype: "float32" or "float64" for the measured products.
      resume: continue the compare folders of an interrupted analysis.
      figures: draw the figures (PNG).
      include: only tensors whose name matches this regex (e.g. a few layers, for a quick look).
    """

    k: int = 64
    alpha: float = 0.5
    layer: str | None = None
    head_dim: int | None = None
    smooth: int = 3
    dtype: str = "float32"
    resume: bool = False
    figures: bool = True
    include: str | None = None


def _check_runs(runs: Sequence[Run]) -> list[Run]:
    runs = [Run(r.name, r.kind, tuple(str(c) for c in r.checkpoints)) for r in runs]
    if not runs:
        raise ValueError("the analysis needs at least one run")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    for r in runs:
        if r.kind not in ("rl", "sft"):
            raise ValueError(f"run {r.name}: kind must be 'rl' or 'sft', got {r.kind!r}")
        if not r.checkpoints:
            raise ValueError(f"run {r.name}: no checkpoints")
    return runs


def _compare(base: str, tuned: list[str], out: Path, cfg: StudyConfig, **kw) -> tuple[dict, list]:
    """`run_compare` then `summarize`; returns the summary and the tensor records."""
    ccfg = CompareConfig(
        base=base,
        tuned=tuple(tuned),
        out=str(out),
        k=cfg.k,
        alpha=cfg.alpha,
        dtype=cfg.dtype,
        resume=cfg.resume,
        include=kw.pop("include", cfg.include),
        layer=kw.pop("layer", cfg.layer),
        **kw,
    )
    run_compare(ccfg)
    return summarize(out), read_jsonl(out / "tensors.jsonl")


def _is_linear(r: dict) -> bool:
    return r["layer_type"] in LINEAR_TYPES and r["name"].endswith(".weight")


def _table1(groups: dict, runs: list[Run]) -> list[dict]:
    rows = []
    for r in runs:
        summary, key = groups[r.kind]["summary"], groups[r.kind]["key"][r.name]
        s = summary["per_tuned"][key]
        rows.append(
            {
                "run": r.name,
                "kind": r.kind,
                "checkpoint": r.checkpoints[-1],
                "sparsity": s["sparsity_all"],
                "sparsity_linear": s["sparsity_linear"],
            }
        )
    return rows


def _table2(summary: dict | None) -> dict | None:
    if summary is None or "table2" not in summary:
        return None
    t2 = summary["table2"]

    def rows(block: dict) -> list[dict]:
        return [
            {
                "type": SHORT[t],
                "jaccard": block[t]["jaccard"],
                "random": block[t]["random"],
                "ratio": block[t]["ratio"],
                "tensors": block[t]["tensors"],
                "matrix": np.asarray(block[t]["matrix"]).tolist(),
            }
            for t in LINEAR_TYPES
            if t in block
        ]

    return {
        "layer": t2["layer"],
        "rows": rows(t2["chosen_layer"]),
        "all_layers": rows(t2["all_layers"]),
    }


def _consensus(folder: Path, records: list[dict], layer: int | None) -> dict | None:
    """M5 maps of the chosen layer: where they are, and how often the changed entries are unanimous."""
    files = sorted((folder / "consensus").glob("*.npz")) if (folder / "consensus").exists() else []
    if not files:
        return None
    density = defaultdict(list)
    for r in records:
        if r.get("layer") == layer and r.get("sparsity") is not None:
            density[r["name"]].append(1.0 - r["sparsity"])
    tensors = []
    for f in files:
        with np.load(f) as z:
            count, runs = z["count"], int(z["runs"])
        name = next((n for n in density if n.replace("/", "_") == f.stem), f.stem)
        any_ = int(np.count_nonzero(count))
        all_ = int(np.count_nonzero(count == runs))
        ps = density.get(name, [])
        p_all, p_none = math.prod(ps), math.prod(1 - p for p in ps)
        null = p_all / (1 - p_none) if ps and p_none < 1 else None
        tensors.append(
            {
                "name": name,
                "runs": runs,
                "mean_consensus": float(count.mean() / runs),
                "unanimous_given_changed": all_ / any_ if any_ else None,
                "unanimous_given_changed_random": null,
            }
        )
    return {"layer": layer, "file": "compare_rl/consensus.npz", "tensors": tensors}


def _temporal(run: Run, base: str, out: Path, cfg: StudyConfig, layer: int) -> dict | None:
    """Row/column update ratios of the chosen layer at each checkpoint of one run; correlation across time."""
    ckpts = [c for c in run.checkpoints if Path(c).resolve() != Path(base).resolve()]
    if len(ckpts) < 2:
        return None
    folder = out / f"temporal_{run.name}"
    include = rf"(?:^|\.)(?:layers|h|blocks|blk|block)\.{layer}\."
    _, recs = _compare(base, ckpts, folder, cfg, include=include, spectral=False, layer=str(layer))
    keys = json.loads((folder / "run.json").read_text())["tuned"]
    prof = load_profiles(folder)
    density = {
        key: _mean(
            [1 - r["sparsity"] for r in recs if r["tuned"] == key and r.get("sparsity") is not None]
        )
        for key in keys
    }
    profiles = {}
    for r in recs:
        if r["tuned"] != keys[0] or not _is_linear(r):
            continue
        for axis in ("row", "col"):
            arrs = [prof.get((r["name"], key), {}).get(f"{axis}_ratio") for key in keys]
            if any(a is None for a in arrs):
                continue
            smooth = np.asarray(moving_average(np.stack(arrs), cfg.smooth), np.float64)
            n = len(keys)
            corr = np.full((n, n), np.nan)
            for i in range(n):
                for j in range(n):
                    c = profile_corr(smooth[i], smooth[j])
                    corr[i, j] = np.nan if c is None else c
            off = [corr[i, j] for i in range(n) for j in range(i + 1, n) if np.isfinite(corr[i, j])]
            profiles[f"{SHORT[r['layer_type']]}.{axis}"] = {
                "name": r["name"],
                "length": int(smooth.shape[1]),
                "corr": corr,
                "mean_corr": _mean(off),
                "null_sd": 1 / math.sqrt(smooth.shape[1]),
                "smoothed": smooth,
            }
    return {
        "run": run.name,
        "checkpoints": ckpts,
        "folder": folder.name,
        "density": [density[k] for k in keys],
        "profiles": profiles,
    }


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return sum(xs) / len(xs) if xs else None


def _max_angle(r: dict) -> float | None:
    a, b = r.get("max_angle_u_deg"), r.get("max_angle_v_deg")
    return None if a is None or b is None else max(a, b)


def _per_run(records: list[dict], key: str) -> dict:
    """Fig 4, Fig 5 and Gate II numbers of one run's final checkpoint (linear weights)."""
    mine = [r for r in records if r["tuned"] == key and _is_linear(r)]
    layers = sorted({r["layer"] for r in mine if r.get("layer") is not None})
    per_layer = []
    for layer in layers:
        rs = [r for r in mine if r.get("layer") == layer]
        row = {"layer": layer, "max_angle_deg": _mean(map(_max_angle, rs))}
        for f in (
            "spectral_shift",
            "overlap_principal",
            "overlap_principal_random",
            "overlap_low",
            "overlap_low_random",
            "overlap_principal_not_low",
            "overlap_principal_not_low_random",
        ):
            row[f] = _mean(r.get(f) for r in rs)
        per_layer.append(row)
    tensors = [
        {
            "name": r["name"],
            "layer": r.get("layer"),
            "type": r["layer_type"],
            "shape": r["shape"],
            "k": r.get("k"),
            **{
                f: r.get(f)
                for f in (
                    "sparsity",
                    "overlap_principal",
                    "overlap_principal_random",
                    "overlap_low",
                    "overlap_low_random",
                    "overlap_principal_not_low",
                    "overlap_principal_not_low_random",
                    "spectral_shift",
                    "dw_norm2",
                    "gap_k",
                    "weyl_ratio",
                    "wedin_ratio",
                    "wedin_premise",
                    "wedin_rigorous_ratio",
                    "wedin_rigorous_premise",
                )
            },
            "max_angle_deg": _max_angle(r),
        }
        for r in mine
    ]
    return {
        "k": sorted({r["k"] for r in mine if r.get("k") is not None}),
        "per_layer": per_layer,
        "tensors": tensors,
        "mean_max_angle_deg": _mean(map(_max_angle, mine)),
        "mean_spectral_shift": _mean(r.get("spectral_shift") for r in mine),
        "gate2": _gate2_summary(mine),
    }


def _largest(mine: list[dict], key: str) -> float | None:
    return max((r[key] for r in mine if r.get(key) is not None), default=None)


def _gate2_summary(mine: list[dict]) -> dict:
    """Gate II over a run's linear tensors: the largest Weyl and Wedin ratios, premise failures, and
    $\\|\\Delta W\\|_2$ against the k-th singular gap."""
    dw_gap = [
        r["dw_norm2"] / r["gap_k"] for r in mine if r.get("dw_norm2") is not None and r.get("gap_k")
    ]
    return {
        "weyl_ratio_max": _largest(mine, "weyl_ratio"),
        "wedin_ratio_max": _largest(mine, "wedin_ratio"),
        "wedin_rigorous_ratio_max": _largest(mine, "wedin_rigorous_ratio"),
        "wedin_premise_false": sum(1 for r in mine if r.get("wedin_premise") is False),
        "wedin_rigorous_premise_false": sum(
            1 for r in mine if r.get("wedin_rigorous_premise") is False
        ),
        "dw_over_gap_median": statistics.median(dw_gap) if dw_gap else None,
        "dw_over_gap_max": max(dw_gap) if dw_gap else None,
        "dw_below_gap_fraction": sum(x < 1 for x in dw_gap) / len(dw_gap) if dw_gap else None,
        "tensors": len(mine),
    }


def _compare_groups(base: str, runs: Sequence[Run], out: Path, cfg: StudyConfig, say) -> dict:
    """One `compare` per kind ("rl", "sft") of the runs' final checkpoints against the base: its summary,
    records, folder and each run's key in it."""
    groups = {}
    for kind in ("rl", "sft"):
        mine = [r for r in runs if r.kind == kind]
        if not mine:
            continue
        say(f"compare: {kind} final checkpoints vs base")
        folder = out / f"compare_{kind}"
        summary, records = _compare(base, [r.checkpoints[-1] for r in mine], folder, cfg)
        keys = summary["tuned"]
        groups[kind] = {
            "summary": summary,
            "records": records,
            "folder": folder,
            "key": {r.name: keys[i] for i, r in enumerate(mine)},
        }
    return groups


def _figures(study: dict, groups: dict, out: Path, base: str, cfg: StudyConfig) -> list[str]:
    from threegate.compare.figures import draw_all
    from threegate.study.figures import draw_study

    paths = [p for g in groups.values() for p in draw_all(g["folder"], cfg.head_dim)]
    paths += draw_study(study, out, base, cfg.head_dim)
    return [str(p.relative_to(out)) for p in paths]


def analyse(
    base: str,
    runs: Sequence[Run],
    out: str | Path,
    cfg: StudyConfig = StudyConfig(),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run the paper's checkpoint experiments on `runs` (all from `base`); write `out/study.json`, return it.

    Args:
      base: the base checkpoint (folder or file) every run started from.
      runs: the runs, each with its checkpoints in step order (`Run`).
      out: folder for the compare runs, `study.json` and the figures.
      cfg: settings (`StudyConfig`).
      progress: called with a short message before each stage.

    Raises:
      ValueError: bad runs or settings (and the checkpoint errors of `run_compare`).
    """
    runs = _check_runs(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    groups = _compare_groups(base, runs, out, cfg, say)
    rl = groups.get("rl")
    layer = (rl or groups["sft"])["summary"]["settings"]["layer"]
    temporal = []
    if rl is not None and layer is not None:
        for r in runs:
            if r.kind == "rl" and len(r.checkpoints) >= 2:
                say(f"compare: checkpoints of {r.name}, layer {layer}")
                t = _temporal(r, base, out, cfg, layer)
                if t is not None:
                    temporal.append(t)
    per_run = {
        r.name: {
            "kind": r.kind,
            **_per_run(groups[r.kind]["records"], groups[r.kind]["key"][r.name]),
        }
        for r in runs
    }
    study = {
        "base": str(base),
        "runs": [r._asdict() for r in runs],
        # `resume` says how the analysis ran, not what it measured: left out so a resumed study's file is the same
        "settings": {
            **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "resume"},
            "layer_index": layer,
        },
        "table1": _table1(groups, runs),
        "table2": _table2(rl["summary"] if rl else None),
        "consensus": _consensus(rl["folder"], rl["records"], layer) if rl else None,
        "temporal": temporal,
        "per_run": per_run,
    }
    study["claims"] = [c._asdict() for c in study_claims(study)]
    study["figures"] = []
    if cfg.figures:
        say("figures")
        study["figures"] = _figures(study, groups, out, base, cfg)
    write_json(out / "study.json", study)
    return to_jsonable(study)
