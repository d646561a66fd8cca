"""The sections of the simulations, the real-model study and the `compare` runs."""

import re
from pathlib import Path
from typing import Any, NamedTuple

from threegate.report._html import Context, claims_table, esc, slug, table
from threegate.report.claims import fmt_num, source_claims
from threegate.report.compare_html import compare_detail, steps_section
from threegate.report.markdown import render_markdown

__all__ = ["COMPARE_CAPTIONS", "SimInfo", "compare_sections", "sim_sections", "study_sections"]

COMPARE_CAPTIONS = {
    "fig5_overlap.png": "Fig 5: per layer, overlap of the update mask with M_princ, M_low and "
    "M_princ ∩ M_low^c against their random baselines (dashed). RL should sit below the baseline on "
    "M_princ and above it on M_low.",
    "fig4_spectrum.png": "Fig 4: principal angles and top-k singular values of one tensor, then the max "
    "principal angle and the normalized spectral shift across layers. Small angles and shifts mean the "
    "update preserved the spectrum.",
    "fig2_consensus.png": "Fig 2: consensus maps of one layer's update masks across the tuned runs; "
    "structure (stripes) means different runs update the same coordinates.",
    "fig3_update_ratios.png": "Fig 3: row update ratio of q_proj and column update ratio of o_proj in one "
    "layer, head boundaries marked; stripes that stay put across checkpoints are the paper's Fig 3.",
}


class SimInfo(NamedTuple):
    """What the caller knows about a simulation name: its label ("S3") and one-line summary."""

    label: str
    summary: str


def sim_sections(ctx: Context, catalog: dict[str, SimInfo]) -> str:
    """One card per simulation result, in the catalog's order (S1–S8), then unknown names: claims, figures."""
    order = list(catalog)

    def key(src):
        name = str(src.result.get("sim"))
        return (order.index(name) if name in order else len(order), name, src.rel)

    parts = []
    for src in sorted(ctx.found.sims, key=key):
        r = src.result
        name = str(r.get("sim"))
        info = catalog.get(name)
        label = f"{info.label} {name}" if info else name
        if sum(str(s.result.get("sim")) == name for s in ctx.found.sims) > 1:
            label += f" ({src.rel})"
        anchor = slug("sim", src.rel)
        where = f"{src.rel}/result.json"
        claims = source_claims(r.get("claims"), label, anchor, ctx.problems, where)
        ctx.claims += claims
        summary = r.get("summary") if isinstance(r.get("summary"), str) else ""
        summary = summary or (info.summary if info else "")
        numbers = _key_numbers(r.get("summary"))
        meta = ", ".join(
            f"{k} {esc(fmt_num(r[k]))}" for k in ("size", "seed") if r.get(k) is not None
        )
        if isinstance(r.get("seconds"), int | float):
            meta += f", ran {r['seconds']:.0f} s"
        data = r.get("data") if isinstance(r.get("data"), list) else []
        data = [d for d in data if isinstance(d, str)]
        if data:
            meta += " · data: " + ", ".join(esc(d) for d in data)
        figs = ctx.figures(_sim_figures(ctx, src, where))
        parts.append(
            f'<div class="card" id="{anchor}"><h3>{esc(label)}</h3>'
            + (f"<p>{esc(summary)}</p>" if summary else "")
            + f'<p class="note">{esc(where)} · {meta}</p>'
            + (claims_table(claims, False) if claims else '<p class="note">No claims.</p>')
            + numbers
            + figs
            + "</div>"
        )
    return "".join(parts)


def _key_numbers(summary: Any) -> str:
    """A result's `summary` object (numbers, flags, one level of nesting) as a compact two-column table."""
    if not isinstance(summary, dict):
        return ""
    rows = []
    for key, value in summary.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            if isinstance(v, str | int | float | bool) or v is None:
                name = f"{key} [{sub}]" if sub is not None else str(key)
                rows.append(f'<tr><td>{esc(name)}</td><td class="num">{esc(fmt_num(v))}</td></tr>')
    if not rows:
        return ""
    return "<h4>Key numbers</h4>" + table(["quantity", "value"], rows, (1,), compact=True)


def _sim_figures(ctx: Context, src, where: str) -> list[tuple[Path, str | None]]:
    r = src.result
    captions = r.get("captions") if isinstance(r.get("captions"), dict) else {}
    items = []
    figures = r.get("figures") or []
    if not isinstance(figures, list):
        ctx.problems.append(f"{where}: 'figures' is not a list")
        return []
    for f in figures:
        if isinstance(f, dict):
            rel, cap = f.get("path"), f.get("caption")
        else:
            rel, cap = f, captions.get(f) if isinstance(f, str) else None
        if not isinstance(rel, str):
            ctx.problems.append(f"{where}: a figure entry has no path")
            continue
        if not rel.lower().endswith(".png"):
            continue
        items.append((src.folder / rel, None if cap is None else str(cap)))
    return items


def study_sections(ctx: Context) -> str:
    """One card per study: its `report.md` (images resolved inside its folder), else its claims; other PNGs."""
    parts = []
    for src in ctx.found.studies:
        anchor = slug("study", src.rel)
        label = "study" if len(ctx.found.studies) == 1 else f"study ({src.rel})"
        where = f"{src.rel}/study.json"
        claims = source_claims(src.study.get("claims"), label, anchor, ctx.problems, where)
        ctx.claims += claims
        used: set[Path] = set()

        def image(ref: str, alt: str, folder: Path = src.folder, used: set = used) -> str | None:
            if re.match(r"^[a-z][a-z0-9+.-]*:|^//", ref, re.I):
                return None  # a URL: never loaded
            path = folder / ref
            tag = ctx.img(path, alt)
            if tag is not None:
                used.add(path.resolve())
            return tag

        body = []
        if src.markdown is not None:
            body.append(f'<div class="md">{render_markdown(src.markdown, image, 3)}</div>')
        elif claims:
            body.append(claims_table(claims, False))
        rest = [
            (p, None)
            for p in sorted(src.folder.glob("*.png"))
            if p.resolve() not in used and p.is_file()
        ]
        if rest:
            body.append("<h4>Figures</h4>" + ctx.figures(rest))
        parts.append(
            f'<div class="card" id="{anchor}"><h3>Real-model study <span class="note">'
            f"{esc(where)}</span></h3>" + "".join(body) + "</div>"
        )
    return "".join(parts)


def compare_sections(ctx: Context) -> str:
    """One card per `compare` run: Table 1 (per tuned checkpoint), Table 2 (when present), its figures."""
    parts = []
    for src in ctx.found.compares:
        anchor = slug("compare", src.rel)
        s = src.summary
        base = Path(str(s.get("base", "?"))).name
        rows = []
        per = s.get("per_tuned") if isinstance(s.get("per_tuned"), dict) else {}
        for key, t in per.items():
            if not isinstance(t, dict):
                continue
            lin = t.get("linear") if isinstance(t.get("linear"), dict) else {}

            def pair(a: str, b: str, lin: dict = lin) -> str:
                return f"{fmt_num(lin.get(a), 3)} ({fmt_num(lin.get(b), 3)})"

            rows.append(
                f"<tr><td>{esc(Path(str(key)).name)}</td>"
                f'<td class="num">{esc(fmt_num(t.get("sparsity_all")))}</td>'
                f'<td class="num">{esc(fmt_num(t.get("sparsity_linear")))}</td>'
                f'<td class="num">{esc(pair("overlap_principal", "overlap_principal_random"))}</td>'
                f'<td class="num">{esc(pair("overlap_low", "overlap_low_random"))}</td>'
                f'<td class="num">{esc(fmt_num(lin.get("max_angle_deg_mean"), 3))}</td>'
                f'<td class="num">{esc(fmt_num(lin.get("spectral_shift_mean"), 3))}</td>'
                f'<td class="num">{esc(fmt_num(lin.get("weyl_ratio_max"), 3))}</td>'
                f'<td class="num">{esc(fmt_num(lin.get("wedin_ratio_max"), 3))}</td></tr>'
            )
        body = [
            f'<p class="note">base: {esc(base)}; linear = every projection matrix (q, k, v, o, gate, up, '
            "down, the parts of fused ones, MLA, routers, all experts) for the overlaps, angles and bounds; "
            "random baselines in parentheses.</p>",
            table(
                [
                    "tuned",
                    "sparsity (all)",
                    "sparsity (linear)",
                    "overlap M_princ (random)",
                    "overlap M_low (random)",
                    "max angle (°)",
                    "NSS",
                    "Weyl max",
                    "Wedin max",
                ],
                rows,
                range(1, 9),
            )
            if rows
            else '<p class="note">No tuned checkpoints in this summary.</p>',
        ]
        body.append(_table2(ctx, s.get("table2")))
        body.append(compare_detail(s))
        figs = [(p, COMPARE_CAPTIONS.get(p.name)) for p in sorted(src.folder.glob("*.png"))]
        body.append(ctx.figures(figs))
        parts.append(
            f'<div class="card" id="{anchor}"><h3>Checkpoint comparison <span class="note">'
            f"{esc(src.rel)}/summary.json</span></h3><h4>Table 1: update sparsity</h4>"
            + "".join(body)
            + "</div>"
        )
    parts.extend(steps_section(src) for src in getattr(ctx.found, "steps", []))
    return "".join(parts)


def _table2(ctx: Context, t2: Any) -> str:
    if not isinstance(t2, dict):
        return ""
    out = []
    for block, title in (("all_layers", "all layers"), ("chosen_layer", "chosen layer")):
        rows_d = t2.get(block)
        if not isinstance(rows_d, dict) or not rows_d:
            continue
        if block == "chosen_layer" and t2.get("layer") is not None:
            title = f"layer {t2['layer']}"
        rows = [
            f"<tr><td>{esc(t)}</td><td class='num'>{esc(fmt_num(r.get('jaccard'), 3))}</td>"
            f"<td class='num'>{esc(fmt_num(r.get('random'), 3))}</td>"
            f"<td class='num'>{esc(fmt_num(r.get('ratio'), 3))}</td>"
            f"<td class='num'>{esc(fmt_num(r.get('tensors')))}</td></tr>"
            for t, r in rows_d.items()
            if isinstance(r, dict)
        ]
        out.append(
            f"<h4>Table 2: Jaccard of the update masks across tuned runs, {esc(title)}</h4>"
            + table(
                ["layer type", "Jaccard", "random pq/(p+q−pq)", "ratio", "tensors"],
                rows,
                (1, 2, 3, 4),
                compact=True,
            )
        )
    return "".join(out)
