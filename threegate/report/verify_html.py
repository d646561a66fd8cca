"""The theorem-check section: the `verify` table, the errata with their exact counter-examples, Tables 4/5."""

import json

from threegate.report._html import Context, esc, slug, table
from threegate.report.claims import fmt_num, rate_text, table_errata_claims, verify_claim

__all__ = ["verify_sections"]


def verify_sections(ctx: Context) -> str:
    """One card per `verify.jsonl`; adds its rows (and the Tables 4/5 claims) to `ctx.claims`."""
    parts = []
    for n, src in enumerate(ctx.found.verify):
        anchor = slug("verify", src.rel)
        label = "verify" if len(ctx.found.verify) == 1 else f"verify ({src.rel})"
        ctx.claims += [verify_claim(s, label, anchor) for s in src.summaries]
        if src.errata:
            ctx.claims += table_errata_claims(src.errata, label, anchor)
        parts.append(_verify_card(ctx, src, anchor, n))
    return "".join(parts)


def _verify_card(ctx: Context, src, anchor: str, n: int) -> str:
    rows = []
    for s in src.summaries:
        status = str(s.get("status", "unknown"))
        verdict = verify_claim(s, "", "").verdict
        corr = s.get("corrected") if status == "violated-as-stated" else None
        corr_html = (
            f'<div class="corrected">corrected: {esc(corr.get("statement", ""))}</div>'
            if isinstance(corr, dict)
            else ""
        )
        corr_ratio = (
            f"<br><span class='note'>corrected: {esc(fmt_num(corr.get('max_ratio')))}, "
            f"{esc(fmt_num(corr.get('violations')))} viol.</span>"
            if isinstance(corr, dict)
            else ""
        )
        rows.append(
            f'<tr class="{verdict}"><td class="id">{esc(s.get("id", "?"))}</td>'
            f"<td>{esc(s.get('statement', ''))}{corr_html}</td>"
            f'<td class="num">{esc(fmt_num(s.get("instances")))}</td>'
            f'<td class="num">{esc(fmt_num(s.get("max_ratio")))}</td>'
            f'<td class="num">{esc(fmt_num(s.get("violations")))}{corr_ratio}</td>'
            f'<td class="num">{esc(rate_text(s) or "-")}</td>'
            f'<td><span class="pill {verdict}">{esc(status)}</span></td></tr>'
        )
    meta = src.summaries[0] if src.summaries else {}
    meta_line = ", ".join(
        f"{k} {esc(meta[k])}"
        for k in ("size", "seed", "backend", "jax_version", "numpy_version")
        if k in meta
    )
    out = [
        f'<div class="card" id="{anchor}"><h3>Theorem check <span class="note">'
        f"{esc(src.rel)}/verify.jsonl</span></h3>",
        f'<p class="note">{len(src.summaries)} results checked numerically in float64 on random, '
        "extremal and adversarial instances. <b>max lhs/rhs</b> ≤ 1 means the bound held everywhere; "
        "<b>viol.</b> counts instances beyond rounding; <b>rate</b> is the fitted log-log slope (expected "
        f"in parentheses). {meta_line}</p>",
        table(
            [
                "id",
                "result as the paper states it",
                "inst",
                "max lhs/rhs",
                "viol.",
                "rate",
                "status",
            ],
            rows,
            num=(2, 3, 4, 5),
        ),
    ]
    out.append(_counter_examples(ctx, src.summaries))
    if src.errata:
        out.append(_table_errata(ctx, src.errata))
    out.append("</div>")
    return "".join(out)


def _counter_examples(ctx: Context, summaries: list[dict]) -> str:
    blocks = []
    for s in summaries:
        if s.get("status") not in ("violated-as-stated", "violated"):
            continue
        examples = s.get("counter_examples_by_kind") or [s.get("counter_example")]
        examples = (
            [ce for ce in examples if isinstance(ce, dict)] if isinstance(examples, list) else []
        )
        rows = [
            f"<tr><td>{esc(ce.get('kind', '?'))}</td>"
            f'<td class="num">{esc(fmt_num(ce.get("ratio"), 6))}</td>'
            f"<td><code>{esc(repr(ce.get('lhs')))} {esc(ce.get('relation', '?'))} "
            f"{esc(repr(ce.get('rhs')))}</code> fails</td>"
            f"<td><pre>{esc(json.dumps(ce.get('instance'), separators=(', ', ': ')))}</pre></td></tr>"
            for ce in examples
        ]
        corr = s.get("corrected")
        corr_html = (
            f'<p class="corrected">corrected form: {esc(corr.get("statement", ""))} — worst ratio '
            f"{esc(fmt_num(corr.get('max_ratio')))} over {esc(fmt_num(corr.get('instances')))} instances, "
            f"{esc(fmt_num(corr.get('violations')))} violations</p>"
            if isinstance(corr, dict)
            else ""
        )
        blocks.append(
            f"<h4>{esc(s.get('id', '?'))}: {esc(s.get('status'))}</h4>"
            f"<p>{esc(s.get('statement', ''))}</p>{corr_html}"
            + (
                table(["instance kind", "lhs/rhs", "the inequality", "exact instance"], rows, (1,))
                if rows
                else ""
            )
        )
    if not blocks:
        return ""
    return (
        "<h4>Errata: where the paper's statements fail</h4>"
        '<p class="note">The worst counter-example of each instance kind, exactly as found '
        "(full-precision floats; rerun with the same seed to reproduce).</p>" + "".join(blocks)
    )


def _table_errata(ctx: Context, errata: dict) -> str:
    rows = []
    tables = errata.get("tables")
    for e in tables if isinstance(tables, list) else []:
        if not isinstance(e, dict):
            continue
        v = e.get("verdict")
        cls = "disagrees" if v == "erratum" else "agrees"
        bench = ", ".join(
            f"{k} {fmt_num(x)}"
            for k, x in (e["benchmarks"] if isinstance(e.get("benchmarks"), dict) else {}).items()
        )
        rows.append(
            f'<tr class="{cls}"><td>{esc(e.get("source", "?"))}</td><td>{esc(e.get("row", "?"))}</td>'
            f"<td>{esc(bench)}</td>"
            f'<td class="num">{esc(fmt_num(e.get("reported_avg")))}</td>'
            f'<td class="num">{esc(fmt_num(e.get("mean_of_4"), 6))}</td>'
            f'<td class="num">{esc(fmt_num(e.get("diff"), 3))}</td>'
            f'<td><span class="pill {cls}">{esc(v)}</span></td></tr>'
        )
    if not rows:
        return ""
    return "<h4>Tables 4 and 5: is each Avg the mean of its row?</h4>" + table(
        ["table", "row", "benchmarks", "reported Avg", "mean of 4", "diff", "verdict"],
        rows,
        (3, 4, 5),
    )


# simulations -----------------------------------------------------------------------------------
