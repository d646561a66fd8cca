"""Figures of `threegate.study.analyse` beyond the compare figures: Fig 3 over time and Fig 4 RL against SFT.

Drawn from the study dict only; matplotlib (Agg) is imported inside `draw_study`.

* `fig3_stripes_over_time.png`: per RL run with checkpoints, the smoothed row ratio of q and column ratio of o
  of the chosen layer at each checkpoint (head boundaries dashed): do the peaks stay put while density grows?
* `fig4_rl_vs_sft.png`: per layer, max principal angle and NSS of every run, RL solid, SFT dashed.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from threegate.compare.figures import head_dim_for

__all__ = ["bar_figure", "draw_study", "line_figure"]


def _fig3(plt, study: dict, out: Path, head_dim: int | None) -> Path | None:
    rows = [t for t in study["temporal"] if "q.row" in t["profiles"] or "o.col" in t["profiles"]]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 2.6 * len(rows)), squeeze=False)
    for ax_row, t in zip(axes, rows, strict=True):
        for ax, key in zip(ax_row, ("q.row", "o.col"), strict=True):
            p = t["profiles"].get(key)
            if p is None:
                ax.set_axis_off()
                continue
            sm = np.asarray(p["smoothed"], np.float64)
            for i, (curve, dens) in enumerate(zip(sm, t["density"], strict=True)):
                ax.plot(curve, lw=0.9, label=f"ckpt {i + 1} (density {dens:.2f})")
            if head_dim:
                for b in range(head_dim, sm.shape[1], head_dim):
                    ax.axvline(b, color="grey", ls="--", lw=0.5)
            ax.set_title(f"{t['run']}: {key} ratio of {p['name']}", fontsize=8)
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "fig3_stripes_over_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fig4(plt, study: dict, out: Path) -> Path | None:
    pr = study["per_run"]
    if not any(row["max_angle_deg"] is not None for r in pr.values() for row in r["per_layer"]):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for name, r in pr.items():
        ls = "-" if r["kind"] == "rl" else "--"
        xs = [row["layer"] for row in r["per_layer"]]
        for ax, field in zip(axes, ("max_angle_deg", "spectral_shift"), strict=True):
            ys = [np.nan if row[field] is None else row[field] for row in r["per_layer"]]
            ax.plot(xs, ys, ls=ls, marker="o", ms=3, label=f"{name} ({r['kind']})")
    axes[0].set_title("max principal angle per layer (degrees)", fontsize=8)
    axes[1].set_title("normalized spectral shift per layer", fontsize=8)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("layer")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    path = out / "fig4_rl_vs_sft.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_study(study: dict, out: str | Path, base: str, head_dim: int | None = None) -> list[Path]:
    """Draw the study figures into `out`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    hd = head_dim_for(base, head_dim)
    drawn = [_fig3(plt, study, out, hd), _fig4(plt, study, out)]
    return [p for p in drawn if p is not None]


def line_figure(
    path: Path, curves: dict[str, np.ndarray], *, xlabel: str, ylabel: str, title: str
) -> None:
    """Small PNG: one line per label (mean over seeds), shaded min–max over seeds. `curves[label]` is `[S, T]`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    for label, c in curves.items():
        c = np.asarray(c, np.float64)
        x = np.arange(1, c.shape[1] + 1)
        (line,) = ax.plot(x, c.mean(axis=0), label=label, lw=1.5)
        if c.shape[0] > 1:
            ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bar_figure(
    path: Path, labels: Sequence[str], cis: Sequence, greedy: Sequence[float], *, title: str
) -> None:
    """Small PNG: avg@k with its 95% CI per run group, greedy accuracy as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    x = np.arange(len(labels))
    means = np.array([c.mean for c in cis])
    err = np.array([[c.mean - c.lo for c in cis], [c.hi - c.mean for c in cis]])
    ax.bar(x, means, yerr=np.nan_to_num(err, posinf=0.0), capsize=3, color="#8fb3d9", label="avg@k")
    ax.plot(x, greedy, "k_", markersize=14, label="greedy")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
