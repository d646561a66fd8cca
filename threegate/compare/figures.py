"""Figures of a `threegate compare` run (the paper's Figs 2–5), drawn from the run folder's files only.

The only module of `threegate.compare` that imports matplotlib (Agg backend, inside `draw_all`).

* `fig5_overlap.png`: per layer, overlap of the update mask with $M_{princ}$, $M_{low}$, $M_{princ}\\cap M_{low}^c$
  (mean over the layer's linear weights) against the random baselines (dashed).
* `fig4_spectrum.png`: principal angles and top-k singular values of the chosen tensor; max principal angle and
  NSS across layers.
* `fig2_consensus.png`: consensus ratio maps (M5) of the chosen layer's matrices (block-averaged for display).
* `fig3_update_ratios.png`: row ratio of q_proj and column ratio of o_proj in the chosen layer (3-wide moving
  average), with head boundaries when the head dimension is known.
"""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from threegate.compare.summary import load_profiles
from threegate.records import read_jsonl

__all__ = ["draw_all", "head_dim_for"]


def head_dim_for(checkpoint: str | Path, override: int | None = None) -> int | None:
    """Head dimension: `override`, else `config.json` next to the checkpoint, else GGUF metadata, else None."""
    if override is not None:
        return override
    p = Path(checkpoint)
    folder = p if p.is_dir() else p.parent
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            c = json.loads(cfg.read_text())
        except json.JSONDecodeError:
            return None
        if c.get("head_dim"):
            return int(c["head_dim"])
        if c.get("hidden_size") and c.get("num_attention_heads"):
            return int(c["hidden_size"]) // int(c["num_attention_heads"])
    if p.suffix.lower() == ".gguf":
        from threegate.checkpoints import GGUFCheckpoint

        with GGUFCheckpoint(p) as g:
            return g.hparams.head_dim
    return None


def _smooth(x: np.ndarray, width: int = 3) -> np.ndarray:
    """The paper's 3-step smoothing, `threegate.masks.moving_average` (windows truncated at the ends)."""
    from threegate.masks import moving_average

    return np.asarray(moving_average(np.asarray(x, np.float32), width))


def _block_mean(a: np.ndarray, most: int = 512) -> np.ndarray:
    fr, fc = max(1, -(-a.shape[0] // most)), max(1, -(-a.shape[1] // most))
    r, c = a.shape[0] // fr * fr, a.shape[1] // fc * fc
    return a[:r, :c].reshape(r // fr, fr, c // fc, fc).mean(axis=(1, 3))


def _per_layer(recs: list[dict], field: str) -> tuple[list[int], list[float]]:
    acc = defaultdict(list)
    for r in recs:
        if r.get("layer") is not None and r.get(field) is not None:
            acc[r["layer"]].append(r[field])
    xs = sorted(acc)
    return xs, [float(np.mean(acc[x])) for x in xs]


def _label(key: str) -> str:
    return Path(key).name or key


def _fig5(plt, recs, tuned, out: Path) -> Path | None:
    lin = [
        r
        for r in recs
        if r.get("overlap_principal") is not None or r.get("overlap_low") is not None
    ]
    if not lin:
        return None
    panels = [
        ("overlap_principal", "$M_{princ}$"),
        ("overlap_low", "$M_{low}$"),
        ("overlap_principal_not_low", "$M_{princ} \\cap M_{low}^c$"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), squeeze=False)
    for ax, (field, title) in zip(axes[0], panels, strict=True):
        for key in tuned:
            mine = [r for r in lin if r["tuned"] == key]
            xs, ys = _per_layer(mine, field)
            if xs:
                (line,) = ax.plot(xs, ys, marker="o", ms=3, label=_label(key))
                bx, by = _per_layer(mine, field + "_random")
                ax.plot(bx, by, ls="--", color=line.get_color(), alpha=0.7)
        ax.set_title(f"overlap with {title} (dashed: random)")
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel("|M• ∩ M| / |M|")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "fig5_overlap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _chosen_tensor(recs: list[dict], run: dict) -> str | None:
    if run.get("layer_tensor") and any(r["name"] == run["layer_tensor"] for r in recs):
        return run["layer_tensor"]
    cands = [
        r
        for r in recs
        if r.get("layer") == run.get("layer") and r.get("max_angle_u_deg") is not None
    ]
    for t in ("q_proj", "o_proj", "down_proj"):
        for r in cands:
            if r["layer_type"] == t:
                return r["name"]
    return cands[0]["name"] if cands else None


def _fig4(plt, recs, tuned, prof, run, out: Path) -> Path | None:
    spec = [r for r in recs if r.get("max_angle_u_deg") is not None]
    if not spec:
        return None
    name = _chosen_tensor(spec, run)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for key in tuned:
        p = prof.get((name, key), {})
        if "angles_u_deg" in p:
            axes[0].plot(
                np.arange(1, p["angles_u_deg"].size + 1),
                np.sort(p["angles_u_deg"]),
                label=_label(key),
            )
        base_s = prof.get((name, None), {}).get("sigma_base")
        if base_s is not None and "sigma_tuned" in p:
            k = p["angles_u_deg"].size
            axes[1].plot(np.arange(1, k + 1), p["sigma_tuned"][:k], ls="--", label=_label(key))
        mine = [r for r in spec if r["tuned"] == key]
        for r in mine:
            r["_maxang"] = max(r["max_angle_u_deg"], r["max_angle_v_deg"])
        xs, ys = _per_layer(mine, "_maxang")
        axes[2].plot(xs, ys, marker="o", ms=3, label=_label(key))
        xs, ys = _per_layer(mine, "spectral_shift")
        axes[3].plot(xs, ys, marker="o", ms=3, label=_label(key))
    base_s = prof.get((name, None), {}).get("sigma_base")
    if base_s is not None:
        k = max(
            (prof.get((name, t), {}).get("angles_u_deg", np.zeros(0)).size for t in tuned),
            default=0,
        )
        axes[1].plot(np.arange(1, k + 1), base_s[:k], color="k", lw=1, label="base")
    axes[0].set_title(f"principal angles (U), {name}", fontsize=8)
    axes[0].set_xlabel("index")
    axes[0].set_ylabel("degrees")
    axes[1].set_title("top-k singular values", fontsize=8)
    axes[1].set_yscale("log")
    axes[2].set_title("max principal angle per layer (mean over tensors)", fontsize=8)
    axes[3].set_title("normalized spectral shift per layer (mean)", fontsize=8)
    axes[3].set_yscale("log")
    for ax in axes[2:]:
        ax.set_xlabel("layer")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "fig4_spectrum.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fig2(plt, out: Path, head_dim: int | None) -> Path | None:
    files = sorted((out / "consensus").glob("*.npz")) if (out / "consensus").exists() else []
    if not files:
        return None
    fig, axes = plt.subplots(1, len(files), figsize=(3.2 * len(files), 3.4), squeeze=False)
    for ax, f in zip(axes[0], files, strict=True):
        with np.load(f) as z:
            c = z["count"] / int(z["runs"])
            runs = int(z["runs"])
        im = ax.imshow(
            _block_mean(c.astype(np.float32)), aspect="auto", cmap="viridis", vmin=0, vmax=1
        )
        ax.set_title(
            f"{f.stem.split('.')[-2] if '.' in f.stem else f.stem} ({runs} run(s))", fontsize=8
        )
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="consensus ratio")
    path = out / "fig2_consensus.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fig3(plt, recs, tuned, prof, run, out: Path, head_dim: int | None) -> Path | None:
    layer = run.get("layer")
    want = {"q_proj": "row_ratio", "o_proj": "col_ratio"}
    names = {
        r["layer_type"]: r["name"]
        for r in recs
        if r.get("layer") == layer and r["layer_type"] in want
    }
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 3.2), squeeze=False)
    for ax, (t, name) in zip(axes[0], sorted(names.items()), strict=True):
        field = want[t]
        for key in tuned:
            arr = prof.get((name, key), {}).get(field)
            if arr is not None:
                ax.plot(_smooth(arr), lw=0.8, label=_label(key))
        if head_dim:
            size = max(
                (prof.get((name, k), {}).get(field, np.zeros(0)).size for k in tuned), default=0
            )
            for b in range(head_dim, size, head_dim):
                ax.axvline(b, color="grey", ls="--", lw=0.5)
        ax.set_title(f"{field.replace('_', ' ')} of {name} (3-wide moving average)", fontsize=8)
        ax.set_xlabel("row" if field == "row_ratio" else "column")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "fig3_update_ratios.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(out: str | Path, head_dim: int | None = None) -> list[Path]:
    """Draw every figure the run folder `out` has data for; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    run = json.loads((out / "run.json").read_text())
    tuned = run["tuned"]
    recs = read_jsonl(out / "tensors.jsonl")
    prof = load_profiles(out)
    hd = head_dim_for(run["base"], head_dim)
    drawn = [
        _fig5(plt, recs, tuned, out),
        _fig4(plt, recs, tuned, prof, run, out),
        _fig2(plt, out, hd),
        _fig3(plt, recs, tuned, prof, run, out, hd),
    ]
    return [p for p in drawn if p is not None]
