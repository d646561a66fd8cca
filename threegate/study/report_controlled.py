"""`report.md` and the frontier figures of the controlled study (`threegate.study.controlled`).

The report puts the claims table first, then the regime each learning rate reached, the three matchings, the
sparsity model and the storage ablation; every table has one line on what to look at. The figures
(`figures/`): every geometry metric and forgetting against the forward KL and against the accuracy gain, one
colour per method, every checkpoint of every lr and seed a point, each run a thin line.
"""

import math
from collections import defaultdict
from pathlib import Path

from threegate.study.matching import value, with_deltas
from threegate.study.report import fmt, md_table

__all__ = ["FRONTIER_METRICS", "write_controlled_report"]

#: (row metric, axis label) of the frontier figures, besides the geometry at the first k.
FRONTIER_METRICS = (
    ("sparsity_all", "bf16 sparsity (all tensors)"),
    ("forgetting_nats", "forgetting: Δ nats/token on English text"),
    ("forgetting_cloze_margin", "forgetting: drop of the cloze margin (nats)"),
)

_COLOURS = {"grpo": "#c0392b", "sft": "#2471a3", "rft": "#27ae60"}


def _frontier(path: Path, rows: list[dict], x: str, y: str, xlabel: str, ylabel: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = defaultdict(list)
    for r in rows:
        if r["storage"] == "bfloat16":
            runs[r["run"]].append(r)
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    drawn, labelled = False, set()
    for rs in runs.values():
        rs.sort(key=lambda r: r["step"])
        pts = [(value(r, x), value(r, y)) for r in rs]
        pts = [(a, b) for a, b in pts if a is not None and b is not None]
        if not pts:
            continue
        m = rs[-1]["method"]
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, "-", color=_COLOURS.get(m, "k"), lw=0.6, alpha=0.5)
        ax.plot(
            xs, ys, "o", ms=3, color=_COLOURS.get(m, "k"),
            label=None if m in labelled else m,
        )  # fmt: skip
        labelled.add(m)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _figures(rows: list[dict], out: Path, k: int) -> list[str]:
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    ys = [
        *FRONTIER_METRICS,
        (f"overlap_principal_lift@{k}", f"overlap lift with M_princ (k={k})"),
        (f"max_angle_deg@{k}", f"max principal angle, degrees (k={k})"),
        (f"nss@{k}", f"NSS (k={k})"),
    ]
    made = []
    for x, xlabel in (
        ("forward_kl", "forward KL(π₀‖π), nats/token"),
        ("accuracy_gain", "accuracy gain"),
    ):
        for y, ylabel in ys:
            name = f"frontier_{y.replace('@', '_k')}_vs_{x}.png"
            if _frontier(folder / name, rows, x, y, xlabel, ylabel):
                made.append(name)
    return made


def _ci(c) -> str:
    if not c:
        return "–"
    lo, hi = c["lo"], c["hi"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(c['mean'])} (n={c['n']}, no CI)"
    return f"{fmt(c['mean'])} [{fmt(lo)}, {fmt(hi)}]"


def write_controlled_report(study: dict, rows: list[dict], out: str | Path) -> list[str]:
    """Write `out/report.md` and the figures; returns the figure names (under `out/figures/`)."""
    out = Path(out)
    preset = study.get("preset", {})
    ks = preset.get("ks", (64,))
    k = ks[0]
    figures = _figures(with_deltas(rows), out, k)
    lines = [f"# The controlled RL-vs-SFT study ({study.get('preset_name', '?')} preset)", ""]
    if study.get("preset_name") == "quick":
        lines += ["*Quick preset: two steps per run; a test of the pipeline, not evidence.*", ""]
    lines += [
        "## Claims",
        "",
        "Each verdict reads the interval beside it; n counts seeds or runs.",
        "",
    ]
    lines += md_table(
        ["claim", "says", "observed", "verdict"],
        [[c["id"], c["paper"], c["observed"], f"**{c['verdict']}**"] for c in study["claims"]],
    )
    reg = study["regime"]
    lines += [
        "## Regime",
        "",
        "End of run, mean over seeds. Look at the lowest lr: the paper's regime is a token-wise KL to the "
        f"base of at most 0.05 nats with a measurable gain (lowest lr within 0.05: {reg['lowest_lr_kl_ok']}).",
        "",
    ]
    lines += md_table(
        ["lr", "method", "reverse KL", "forward KL", "accuracy gain", "runs"],
        [
            [f"{p['lr']:.0e}", p["method"], fmt(p["reverse_kl_end"]), fmt(p["forward_kl_end"]),
             fmt(p["accuracy_gain_end"]), p["runs"]]
            for p in reg["per_lr"]
        ],
    )  # fmt: skip
    show = ["sparsity_all", f"overlap_principal_lift@{k}", f"max_angle_deg@{k}", f"nss@{k}",
            "forward_kl", "accuracy_gain", "forgetting_nats"]  # fmt: skip
    lines += [
        "## Matched learning rate and steps",
        "",
        "a − b at each lr's last checkpoint, paired by seed (Student-t over seeds). Look at the sign of "
        "GRPO − SFT on sparsity and geometry at the same budget.",
        "",
    ]
    last = max((r["step"] for r in study["matched_lr"]), default=None)
    lines += md_table(
        ["lr", "a − b", *show],
        [
            [f"{r['lr']:.0e}", f"{r['a']} − {r['b']}", *(_ci(r.get(m)) for m in show)]
            for r in study["matched_lr"]
            if r["step"] == last
        ],
    )
    for key, title, x in (
        ("matched_kl", "Matched forward KL", "forward KL level"),
        ("matched_accuracy", "Matched accuracy gain", "accuracy-gain level"),
    ):
        m = study[key]
        lines += [
            f"## {title}",
            "",
            f"Each run interpolated at the {x} (levels inside the range every method reaches: "
            f"{', '.join(fmt(v) for v in m['levels']) or 'none'}); a − b by Welch over the runs that reach "
            "it. Look at whether the methods still differ once the move away from the base is the same.",
            "",
        ]
        lines += md_table(
            [x, "a − b", *show],
            [
                [fmt(r["level"]), f"{r['a']} − {r['b']}", *(_ci(r.get(mm)) for mm in show)]
                for r in m["rows"]
            ],
        )
    sm = study["sparsity_model"]
    lines += [
        "## The sparsity model",
        "",
        "A weight stays bitwise unchanged while its net master move is under half its bf16 ULP. Predicted "
        "from D = drift efficiency × lr × updates ('nominal') or × the measured mean path ('measured_path'), "
        "every weight moving D ('step') or an exponential spread of mean D. Look at the error, and at "
        "whether it differs by method.",
        "",
    ]
    lines += md_table(
        ["model", "mean |error|"], [[k2, fmt(v)] for k2, v in sm["mean_abs_error"].items()]
    )
    if sm["best"]:
        lines += md_table(
            ["run", "step", "measured", f"predicted ({sm['best']})"],
            [
                [p["run"], p["step"], fmt(p["measured"], ".4f"), fmt(p[sm["best"]], ".4f")]
                for p in sm["points"]
            ],
        )
    if study["ablation"]:
        lines += [
            "## Storage ablation (float32 weights)",
            "",
            "The float32 runs' geometry is read on their largest-|ΔW| entries at the density of the bf16 twin. "
            "Look at whether the RL/SFT contrast survives without Gate III.",
            "",
        ]
        fields = [f"overlap_principal_lift@{k}", f"max_angle_deg@{k}", f"nss@{k}"]
        lines += md_table(
            ["run", "step", "bf16 sparsity if rounded", "twin's sparsity",
             *(f"{f} f32 / bf16" for f in fields)],
            [
                [a["run"], a["step"], fmt(a["sparsity_bf16_counterfactual"], ".4f"),
                 fmt(a["sparsity_bf16_twin"], ".4f"),
                 *(f"{fmt((a.get(f) or {}).get('float32'))} / {fmt((a.get(f) or {}).get('bfloat16'))}" for f in fields)]
                for a in study["ablation"]
            ],
        )  # fmt: skip
    if figures:
        lines += [
            "## Frontiers",
            "",
            "Each point a checkpoint, each line a run; colour by method.",
            "",
        ]
        lines += [f"![{f}](figures/{f})" for f in figures] + [""]
    (out / "report.md").write_text("\n".join(lines))
    return figures
