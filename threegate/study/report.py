"""`report.md` of a study: the claims table first, then the tables and figures, each with what to look at."""

import math
from pathlib import Path

__all__ = ["fmt", "md_table", "write_report"]

#: One line per figure file-name prefix: what to look at.
CAPTIONS = {
    "fig2": "Consensus maps: entries every RL run updated; stripes along rows or columns are the paper's Fig 2.",
    "fig3": "Row/column update ratios of q and o at the checkpoints: do the stripes stay put over training?",
    "fig4": "Max principal angle and normalized spectral shift per layer: RL should rotate and shift less than SFT.",
    "fig5": "Overlap of the update mask with M_princ, M_low and M_princ∩M_low^c against random masks.",
    "sparse_kl": "Fig 9: token-wise KL to the base per step: does the safe mask follow dense, M_princ lag?",
    "sparse_accuracy": "Tables 4–5: held-out accuracy after sparse GRPO by mask, against the base and dense.",
    "curvature": "Fisher curvature by direction family: is M_princ above its complement and the isotropic baseline?",
}


def fmt(x, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return [*out, ""]


def _caption(name: str) -> str:
    stem = Path(name).stem
    for prefix, text in CAPTIONS.items():
        if stem.startswith(prefix):
            return text
    return ""


def write_report(study: dict, out: str | Path, figures_dir: str = "analysis") -> Path:
    """Write `out/report.md` from a study dict (as `threegate study` writes it)."""
    out = Path(out)
    lines = [f"# The paper's claims on real runs ({study.get('preset', '?')} preset)", ""]
    if study.get("preset") == "quick":
        lines += [
            "*Quick preset: a few steps per run and three layers; a smoke test of the pipeline, not evidence.*",
            "",
        ]
    lines += ["## Claims", ""]
    lines += md_table(
        ["claim", "paper", "observed", "verdict"],
        [
            [c["id"], c["paper"], c["observed"], f"**{c['verdict']}**"]
            for c in study.get("claims", [])
        ],
    )
    evals = study.get("evals") or {}
    if evals:
        lines += ["## The runs: held-out accuracy before and after", ""]
        rows = []
        for name, ev in evals.items():
            b, a = ev.get("eval_before", {}), ev.get("eval_after", {})
            d = (ev.get("difference") or {}).get("accuracy") or {}
            rows.append(
                [
                    name,
                    ev.get("eval_size"),
                    f"{fmt(b.get('accuracy'))} → {fmt(a.get('accuracy'))}",
                    f"{fmt(d.get('difference'))} [{fmt((d.get('ci') or [None, None])[0])}, "
                    f"{fmt((d.get('ci') or [None, None])[1])}]",
                    f"{fmt(b.get('greedy_accuracy'))} → {fmt(a.get('greedy_accuracy'))}",
                ]
            )
        lines += md_table(["run", "n", "avg@k accuracy", "difference [95% CI]", "greedy"], rows)
    lines += ["## Table 1: bf16 update sparsity against step 0", ""]
    lines += md_table(
        ["run", "kind", "sparsity (all)", "sparsity (linear)"],
        [
            [r["run"], r["kind"], fmt(r["sparsity"], ".4f"), fmt(r["sparsity_linear"], ".4f")]
            for r in study.get("table1", [])
        ],
    )
    t2 = study.get("table2")
    if t2:
        lines += [
            f"## Table 2: Jaccard of the RL runs' update masks, layer {t2['layer']}",
            "",
            "Look at the ratio: above 1 means the runs update the same entries more often than independent "
            "masks of the same densities would.",
            "",
        ]
        lines += md_table(
            ["type", "mean Jaccard", "random baseline", "ratio"],
            [[r["type"], fmt(r["jaccard"]), fmt(r["random"]), fmt(r["ratio"])] for r in t2["rows"]],
        )
    lines += _sparse_section(study.get("sparse"))
    lines += _curvature_section(study.get("curvature"))
    figs = study.get("figures") or []
    if figs:
        lines += ["## Figures", ""]
        for f in figs:
            cap = _caption(f)
            lines += (
                [f"![{Path(f).stem}]({figures_dir}/{f})", "", cap, ""]
                if cap
                else [
                    f"![{Path(f).stem}]({figures_dir}/{f})",
                    "",
                ]
            )
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _sparse_section(sp: dict | None) -> list[str]:
    if not sp:
        return []
    lines = ["## Tables 4–5: sparse GRPO with one-shot masks from W₀", ""]
    if sp.get("missing"):
        return [*lines, f"Not run yet: {', '.join(sp['missing'])}.", ""]
    lines += [
        "Look at accuracy by mask against dense, and at the control: no entry outside a mask may change a bit.",
        "",
    ]
    rows = []
    for r in sp["arms"]:
        a = r["avg_at_k"]
        rows.append(
            [
                r["arm"],
                fmt(r.get("param_share"), ".3f"),
                f"{fmt(a['mean'])} [{fmt(a['lo'])}, {fmt(a['hi'])}]",
                fmt(r["greedy"]["mean"]),
                fmt(r["final_kl_exact"], ".2e"),
                fmt(r.get("sparsity_linear"), ".4f"),
                r.get("changed_outside_mask", "–"),
            ]
        )
    lines += md_table(
        [
            "arm",
            "trainable share",
            f"avg@{sp.get('eval_k')} [95% CI]",
            "greedy",
            "final KL to base",
            "bf16 sparsity (linear)",
            "frozen bits changed",
        ],
        rows,
    )
    return lines


def _curvature_section(cur: dict | None) -> list[str]:
    if not cur:
        return []
    s = cur["summary"]
    lines = [
        "## Curvature proxy: Fisher curvature of the base policy along direction families",
        "",
        f"Layers {cur['settings']['layers']}, {cur['settings']['directions']} unit directions per family and "
        "tensor. Look at principal against non-principal (the paper's premise: above 1) and against isotropic "
        "(the random baseline).",
        "",
    ]
    fams = s["families"]
    rows = [
        [t, *(fmt(v.get(f)) for f in fams), fmt(v.get("principal/nonprincipal"))]
        for t, v in s["per_type"].items()
    ]
    lines += md_table(["type", *[f"q {f}" for f in fams], "princ/non-princ"], rows)
    return lines
