"""The detail of one `compare` run on the report page: warnings, per-type, per-layer and per-expert tables, and
the curves over steps of a `ThreeGateCallback` run (inline SVG, no figure files needed)."""

from typing import Any

from threegate.report._html import esc, table
from threegate.report.claims import fmt_num

__all__ = ["compare_detail", "steps_section"]


def _pair(d: dict, a: str) -> str:
    return f"{fmt_num(d.get(a), 3)} ({fmt_num(d.get(a + '_random'), 3)})"


def _stats_row(label: str, d: dict) -> str:
    return (
        f"<tr><td>{esc(label)}</td><td class='num'>{esc(fmt_num(d.get('tensors')))}</td>"
        f"<td class='num'>{esc(fmt_num(d.get('sparsity')))}</td>"
        f"<td class='num'>{esc(_pair(d, 'overlap_principal'))}</td>"
        f"<td class='num'>{esc(_pair(d, 'overlap_low'))}</td>"
        f"<td class='num'>{esc(fmt_num(d.get('max_angle_deg_mean'), 3))}</td>"
        f"<td class='num'>{esc(fmt_num(d.get('spectral_shift_mean'), 3))}</td></tr>"
    )


_HEAD = [
    "",
    "tensors",
    "sparsity",
    "overlap M_princ (random)",
    "overlap M_low (random)",
    "max angle (°)",
    "NSS",
]


def compare_detail(summary: dict) -> str:
    """Warnings, then per tuned checkpoint: linear / all matrices / per type, per layer, per expert."""
    out = []
    warnings = summary.get("warnings")
    if isinstance(warnings, list) and warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        out.append(f'<h4>Warnings</h4><ul class="note">{items}</ul>')
    per = summary.get("per_tuned") if isinstance(summary.get("per_tuned"), dict) else {}
    for key, t in per.items():
        if not isinstance(t, dict):
            continue
        name = str(key).rstrip("/").rsplit("/", 1)[-1]
        rows = []
        for label, field in (("linear", "linear"), ("all matrices", "all_matrices")):
            if isinstance(t.get(field), dict):
                rows.append(_stats_row(label, t[field]))
        for typ, d in (t.get("by_type") or {}).items():
            if isinstance(d, dict):
                rows.append(_stats_row(typ, d))
        out.append(
            f"<h4>{esc(name)}: by layer type</h4>" + table(_HEAD, rows, range(1, 7), compact=True)
        )
        layers = [d for d in t.get("by_layer") or [] if isinstance(d, dict)]
        if layers:
            rows = [_stats_row(str(d.get("layer")), d) for d in layers]
            head = ["layer", *_HEAD[1:]]
            out.append(
                f"<h4>{esc(name)}: per layer (linear matrices)</h4>"
                + table(head, rows, range(1, 7), compact=True)
            )
        experts = [d for d in t.get("by_expert") or [] if isinstance(d, dict)]
        if experts:
            out.append(f"<h4>{esc(name)}: experts</h4>" + _experts(experts))
    return "".join(out)


def _experts(rows: list[dict]) -> str:
    """Layers x experts grid of sparsity (the update's reach per expert), shared experts in their own column."""
    layers = sorted({r.get("layer") for r in rows}, key=lambda x: (x is None, x))
    cols = sorted(
        {(r.get("expert_kind"), r.get("expert")) for r in rows},
        key=lambda c: (c[0] != "routed", c[1] or 0),
    )
    cell = {(r.get("layer"), r.get("expert_kind"), r.get("expert")): r for r in rows}
    head = ["layer", *(f"e{e}" if k == "routed" else str(k) for k, e in cols)]
    body = []
    for layer in layers:
        tds = "".join(
            f"<td class='num'>{esc(fmt_num((cell.get((layer, k, e)) or {}).get('sparsity'), 3))}</td>"
            for k, e in cols
        )
        body.append(f"<tr><td>{esc(layer)}</td>{tds}</tr>")
    note = '<p class="note">bf16 sparsity of each expert\'s matrices (1 = untouched by the update).</p>'
    return note + table(head, body, range(1, len(head)), compact=True)


def _svg(
    steps: list[int], series: dict[str, list[Any]], width: int = 520, height: int = 160
) -> str:
    pts = [
        (s, v)
        for vals in series.values()
        for s, v in zip(steps, vals, strict=False)
        if v is not None
    ]
    if not pts:
        return ""
    x0, x1 = min(steps), max(steps)
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    hi = hi if hi > lo else lo + 1e-12
    sx = lambda s: 40 + (width - 60) * ((s - x0) / (x1 - x0) if x1 > x0 else 0.5)  # noqa: E731
    sy = lambda v: 10 + (height - 30) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    lines = []
    for i, (label, vals) in enumerate(series.items()):
        xy = " ".join(
            f"{sx(s):.1f},{sy(v):.1f}" for s, v in zip(steps, vals, strict=False) if v is not None
        )
        c = colors[i % len(colors)]
        lines.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{xy}"/>')
        lines.append(
            f'<text x="{width - 150}" y="{20 + 14 * i}" fill="{c}" font-size="11">{esc(label)}</text>'
        )
    axis = (
        f'<text x="2" y="{sy(hi) + 4:.1f}" font-size="10">{fmt_num(hi, 3)}</text>'
        f'<text x="2" y="{sy(lo) + 4:.1f}" font-size="10">{fmt_num(lo, 3)}</text>'
        f'<text x="40" y="{height - 4}" font-size="10">step {x0}</text>'
        f'<text x="{width - 70}" y="{height - 4}" font-size="10">step {x1}</text>'
    )
    return f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{axis}{"".join(lines)}</svg>'


def steps_section(src) -> str:
    """One card for a `ThreeGateCallback` run: sparsity and overlap lifts over steps, curves and table."""
    rows = sorted(src.steps, key=lambda r: r["step"])
    steps = [r["step"] for r in rows]
    s = [r["summary"] for r in rows]
    spars = {
        "sparsity (linear)": [x.get("sparsity_linear") for x in s],
        "sparsity (all)": [x.get("sparsity_all") for x in s],
    }
    lifts = {
        "overlap lift M_princ": [x.get("overlap_principal_lift") for x in s],
        "overlap lift M_low": [x.get("overlap_low_lift") for x in s],
    }
    body = [
        '<p class="note">bf16 values against step 0 during training (ThreeGateCallback); a lift is the '
        "overlap over its random baseline (1 = chance).</p>",
        _svg(steps, spars),
        _svg(steps, lifts),
        table(
            [
                "step",
                "sparsity (all)",
                "sparsity (linear)",
                "lift M_princ",
                "lift M_low",
                "max angle (°)",
            ],
            [
                f"<tr><td>{esc(st)}</td><td class='num'>{esc(fmt_num(x.get('sparsity_all')))}</td>"
                f"<td class='num'>{esc(fmt_num(x.get('sparsity_linear')))}</td>"
                f"<td class='num'>{esc(fmt_num(x.get('overlap_principal_lift'), 3))}</td>"
                f"<td class='num'>{esc(fmt_num(x.get('overlap_low_lift'), 3))}</td>"
                f"<td class='num'>{esc(fmt_num(max((x.get('max_angle_deg') or {}).values(), default=None), 3))}</td></tr>"
                for st, x in zip(steps, s, strict=True)
            ],
            range(1, 6),
            compact=True,
        ),
    ]
    return (
        f'<div class="card"><h3>Training run against step 0 <span class="note">{esc(src.rel)}/'
        f"threegate_steps.jsonl</span></h3>" + "".join(body) + "</div>"
    )
