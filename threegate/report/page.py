"""The report page: one self-contained HTML document from what `discover` found.

Layout, top to bottom: the tally of verdicts; problems (unreadable files) and what was not found; **every claim
of every source in one table** with a legend; the theorem check (table, errata with their exact counter-examples,
the Tables 4/5 arithmetic); each simulation's claims and figures; the real-model study's report; each `compare`
run's Tables 1/2 and figures. Every string from a file is HTML-escaped; figures are embedded as `data:` URIs;
nothing refers outside the page.
"""

import html
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from threegate.report.claims import (
    VERDICTS,
    ClaimRow,
    fmt_num,
    rate_text,
    source_claims,
    table_errata_claims,
    verify_claim,
)
from threegate.report.discover import Found
from threegate.report.embed import Embedded, read_png
from threegate.report.markdown import render_markdown
from threegate.report.style import CSS

__all__ = ["COMPARE_CAPTIONS", "Report", "SimInfo", "build_report"]

PAPER = "The Path Not Taken: RLVR Provably Learns Off the Principals (Zhu et al., arXiv 2511.08567)"

VERDICT_TEXT = {
    "agrees": "the run reproduces what the paper claims",
    "disagrees": "the run contradicts the claim as stated (for theorems: the stated form fails; "
    "see the corrected form)",
    "inconclusive": "the evidence does not decide (interval straddles the baseline, or too few runs)",
}

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


class Report(NamedTuple):
    html: str
    claims: list[ClaimRow]
    problems: list[str]  # one line each: unreadable files and malformed entries
    missing: list[str]  # what was looked for and not found


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _slug(*parts: str) -> str:
    s = "-".join(re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-").lower() for p in parts if p)
    return s or "root"


def _pill(verdict: str) -> str:
    return f'<span class="pill {_e(verdict)}">{_e(verdict)}</span>'


def _table(
    head: Sequence[str], rows: Iterable[str], num: Sequence[int] = (), compact: bool = False
) -> str:
    cls = ' class="compact"' if compact else ""
    ths = "".join(
        f'<th class="num">{_e(h)}</th>' if i in num else f"<th>{_e(h)}</th>"
        for i, h in enumerate(head)
    )
    return (
        f'<div class="tablewrap"><table{cls}><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _claims_table(claims: list[ClaimRow], with_source: bool) -> str:
    rows = []
    for c in claims:
        src = (
            f'<td class="src"><a href="#{_e(c.anchor)}">{_e(c.source)}</a></td>'
            if with_source
            else ""
        )
        rows.append(
            f'<tr class="{_e(c.verdict)}">{src}<td class="id">{_e(c.id)}</td>'
            f'<td class="paper">{_e(c.paper)}</td><td class="obs">{_e(c.observed)}</td>'
            f"<td>{_pill(c.verdict)}</td></tr>"
        )
    head = (["source"] if with_source else []) + ["claim", "paper", "observed", "verdict"]
    return _table(head, rows)


class _Page:
    """Collects claims, problems and figure notes while rendering the sections."""

    def __init__(self, found: Found):
        self.found = found
        self.root = found.root
        self.claims: list[ClaimRow] = []
        self.problems: list[str] = [p.line() for p in found.problems]

    # figures ---------------------------------------------------------------------------------------
    def img(self, path: Path, alt: str) -> str | None:
        got = self._embed(path)
        return None if got is None else self._tag(got, alt)

    def _embed(self, path: Path) -> Embedded | None:
        got = read_png(self.root, path)
        if not isinstance(got, Embedded):
            self.problems.append(f"{self._rel(path)}: figure not embedded: {got}")
            return None
        return got

    @staticmethod
    def _tag(got: Embedded, alt: str) -> str:
        return (
            f'<img src="{got.uri}" alt="{_e(alt)}" width="{got.width}" height="{got.height}" '
            f'loading="eager">'
        )

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def figure(self, path: Path, caption: str | None) -> str:
        got = self._embed(path)
        if got is None:
            return ""
        wide = ' class="wide"' if got.width > 1.8 * got.height else ""  # multi-panel: a full row
        cap = f"<b>{_e(path.name)}</b>" + (f" — {_e(caption)}" if caption else "")
        return f"<figure{wide}>{self._tag(got, caption or path.name)}<figcaption>{cap}</figcaption></figure>"

    def figures(self, items: list[tuple[Path, str | None]]) -> str:
        figs = [f for f in (self.figure(p, c) for p, c in items) if f]
        return f'<div class="figs">{"".join(figs)}</div>' if figs else ""

    # theorem check ---------------------------------------------------------------------------------
    def verify_sections(self) -> str:
        parts = []
        for n, src in enumerate(self.found.verify):
            anchor = _slug("verify", src.rel)
            label = "verify" if len(self.found.verify) == 1 else f"verify ({src.rel})"
            self.claims += [verify_claim(s, label, anchor) for s in src.summaries]
            if src.errata:
                self.claims += table_errata_claims(src.errata, label, anchor)
            parts.append(self._verify_card(src, anchor, n))
        return "".join(parts)

    def _verify_card(self, src, anchor: str, n: int) -> str:
        rows = []
        for s in src.summaries:
            status = str(s.get("status", "unknown"))
            verdict = verify_claim(s, "", "").verdict
            corr = s.get("corrected") if status == "violated-as-stated" else None
            corr_html = (
                f'<div class="corrected">corrected: {_e(corr.get("statement", ""))}</div>'
                if isinstance(corr, dict)
                else ""
            )
            corr_ratio = (
                f"<br><span class='note'>corrected: {_e(fmt_num(corr.get('max_ratio')))}, "
                f"{_e(fmt_num(corr.get('violations')))} viol.</span>"
                if isinstance(corr, dict)
                else ""
            )
            rows.append(
                f'<tr class="{verdict}"><td class="id">{_e(s.get("id", "?"))}</td>'
                f"<td>{_e(s.get('statement', ''))}{corr_html}</td>"
                f'<td class="num">{_e(fmt_num(s.get("instances")))}</td>'
                f'<td class="num">{_e(fmt_num(s.get("max_ratio")))}</td>'
                f'<td class="num">{_e(fmt_num(s.get("violations")))}{corr_ratio}</td>'
                f'<td class="num">{_e(rate_text(s) or "-")}</td>'
                f'<td><span class="pill {verdict}">{_e(status)}</span></td></tr>'
            )
        meta = src.summaries[0] if src.summaries else {}
        meta_line = ", ".join(
            f"{k} {_e(meta[k])}"
            for k in ("size", "seed", "backend", "jax_version", "numpy_version")
            if k in meta
        )
        out = [
            f'<div class="card" id="{anchor}"><h3>Theorem check <span class="note">'
            f"{_e(src.rel)}/verify.jsonl</span></h3>",
            f'<p class="note">{len(src.summaries)} results checked numerically in float64 on random, '
            "extremal and adversarial instances. <b>max lhs/rhs</b> ≤ 1 means the bound held everywhere; "
            "<b>viol.</b> counts instances beyond rounding; <b>rate</b> is the fitted log-log slope (expected "
            f"in parentheses). {meta_line}</p>",
            _table(
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
        out.append(self._counter_examples(src.summaries))
        if src.errata:
            out.append(self._table_errata(src.errata))
        out.append("</div>")
        return "".join(out)

    def _counter_examples(self, summaries: list[dict]) -> str:
        blocks = []
        for s in summaries:
            if s.get("status") not in ("violated-as-stated", "violated"):
                continue
            examples = s.get("counter_examples_by_kind") or [s.get("counter_example")]
            examples = [ce for ce in examples if isinstance(ce, dict)]
            rows = [
                f"<tr><td>{_e(ce.get('kind', '?'))}</td>"
                f'<td class="num">{_e(fmt_num(ce.get("ratio"), 6))}</td>'
                f"<td><code>{_e(repr(ce.get('lhs')))} {_e(ce.get('relation', '?'))} "
                f"{_e(repr(ce.get('rhs')))}</code> fails</td>"
                f"<td><pre>{_e(json.dumps(ce.get('instance'), separators=(', ', ': ')))}</pre></td></tr>"
                for ce in examples
            ]
            corr = s.get("corrected")
            corr_html = (
                f'<p class="corrected">corrected form: {_e(corr.get("statement", ""))} — worst ratio '
                f"{_e(fmt_num(corr.get('max_ratio')))} over {_e(fmt_num(corr.get('instances')))} instances, "
                f"{_e(fmt_num(corr.get('violations')))} violations</p>"
                if isinstance(corr, dict)
                else ""
            )
            blocks.append(
                f"<h4>{_e(s.get('id', '?'))}: {_e(s.get('status'))}</h4>"
                f"<p>{_e(s.get('statement', ''))}</p>{corr_html}"
                + (
                    _table(
                        ["instance kind", "lhs/rhs", "the inequality", "exact instance"], rows, (1,)
                    )
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

    def _table_errata(self, errata: dict) -> str:
        rows = []
        for e in errata.get("tables") or []:
            if not isinstance(e, dict):
                continue
            v = e.get("verdict")
            cls = "disagrees" if v == "erratum" else "agrees"
            bench = ", ".join(f"{k} {fmt_num(x)}" for k, x in (e.get("benchmarks") or {}).items())
            rows.append(
                f'<tr class="{cls}"><td>{_e(e.get("source", "?"))}</td><td>{_e(e.get("row", "?"))}</td>'
                f"<td>{_e(bench)}</td>"
                f'<td class="num">{_e(fmt_num(e.get("reported_avg")))}</td>'
                f'<td class="num">{_e(fmt_num(e.get("mean_of_4"), 6))}</td>'
                f'<td class="num">{_e(fmt_num(e.get("diff"), 3))}</td>'
                f'<td><span class="pill {cls}">{_e(v)}</span></td></tr>'
            )
        if not rows:
            return ""
        return "<h4>Tables 4 and 5: is each Avg the mean of its row?</h4>" + _table(
            ["table", "row", "benchmarks", "reported Avg", "mean of 4", "diff", "verdict"],
            rows,
            (3, 4, 5),
        )

    # simulations -----------------------------------------------------------------------------------
    def sim_sections(self, catalog: dict[str, SimInfo]) -> str:
        order = list(catalog)

        def key(src):
            name = str(src.result.get("sim"))
            return (order.index(name) if name in order else len(order), name, src.rel)

        parts = []
        for src in sorted(self.found.sims, key=key):
            r = src.result
            name = str(r.get("sim"))
            info = catalog.get(name)
            label = f"{info.label} {name}" if info else name
            if sum(str(s.result.get("sim")) == name for s in self.found.sims) > 1:
                label += f" ({src.rel})"
            anchor = _slug("sim", src.rel)
            where = f"{src.rel}/result.json"
            claims = source_claims(r.get("claims"), label, anchor, self.problems, where)
            self.claims += claims
            summary = r.get("summary") or (info.summary if info else "")
            meta = ", ".join(
                f"{k} {_e(fmt_num(r[k]))}" for k in ("size", "seed") if r.get(k) is not None
            )
            if isinstance(r.get("seconds"), int | float):
                meta += f", ran {r['seconds']:.0f} s"
            figs = self.figures(self._sim_figures(src, where))
            parts.append(
                f'<div class="card" id="{anchor}"><h3>{_e(label)}</h3>'
                + (f"<p>{_e(summary)}</p>" if summary else "")
                + f'<p class="note">{_e(where)} · {meta}</p>'
                + (_claims_table(claims, False) if claims else '<p class="note">No claims.</p>')
                + figs
                + "</div>"
            )
        return "".join(parts)

    def _sim_figures(self, src, where: str) -> list[tuple[Path, str | None]]:
        r = src.result
        captions = r.get("captions") if isinstance(r.get("captions"), dict) else {}
        items = []
        figures = r.get("figures") or []
        if not isinstance(figures, list):
            self.problems.append(f"{where}: 'figures' is not a list")
            return []
        for f in figures:
            if isinstance(f, dict):
                rel, cap = f.get("path"), f.get("caption")
            else:
                rel, cap = f, captions.get(f)
            if not isinstance(rel, str):
                self.problems.append(f"{where}: a figure entry has no path")
                continue
            if not rel.lower().endswith(".png"):
                continue
            items.append((src.folder / rel, None if cap is None else str(cap)))
        return items

    # study -----------------------------------------------------------------------------------------
    def study_sections(self) -> str:
        parts = []
        for src in self.found.studies:
            anchor = _slug("study", src.rel)
            label = "study" if len(self.found.studies) == 1 else f"study ({src.rel})"
            where = f"{src.rel}/study.json"
            claims = source_claims(src.study.get("claims"), label, anchor, self.problems, where)
            self.claims += claims
            used: set[Path] = set()

            def image(
                ref: str, alt: str, folder: Path = src.folder, used: set = used
            ) -> str | None:
                if re.match(r"^[a-z][a-z0-9+.-]*:|^//", ref, re.I):
                    return None  # a URL: never loaded
                path = folder / ref
                tag = self.img(path, alt)
                if tag is not None:
                    used.add(path.resolve())
                return tag

            body = []
            if src.markdown is not None:
                body.append(f'<div class="md">{render_markdown(src.markdown, image, 3)}</div>')
            elif claims:
                body.append(_claims_table(claims, False))
            rest = [
                (p, None)
                for p in sorted(src.folder.glob("*.png"))
                if p.resolve() not in used and p.is_file()
            ]
            if rest:
                body.append("<h4>Figures</h4>" + self.figures(rest))
            parts.append(
                f'<div class="card" id="{anchor}"><h3>Real-model study <span class="note">'
                f"{_e(where)}</span></h3>" + "".join(body) + "</div>"
            )
        return "".join(parts)

    # compare ---------------------------------------------------------------------------------------
    def compare_sections(self) -> str:
        parts = []
        for src in self.found.compares:
            anchor = _slug("compare", src.rel)
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
                    f"<tr><td>{_e(Path(str(key)).name)}</td>"
                    f'<td class="num">{_e(fmt_num(t.get("sparsity_all")))}</td>'
                    f'<td class="num">{_e(fmt_num(t.get("sparsity_linear")))}</td>'
                    f'<td class="num">{_e(pair("overlap_principal", "overlap_principal_random"))}</td>'
                    f'<td class="num">{_e(pair("overlap_low", "overlap_low_random"))}</td>'
                    f'<td class="num">{_e(fmt_num(lin.get("max_angle_deg_mean"), 3))}</td>'
                    f'<td class="num">{_e(fmt_num(lin.get("spectral_shift_mean"), 3))}</td>'
                    f'<td class="num">{_e(fmt_num(lin.get("weyl_ratio_max"), 3))}</td>'
                    f'<td class="num">{_e(fmt_num(lin.get("wedin_ratio_max"), 3))}</td></tr>'
                )
            body = [
                f'<p class="note">base: {_e(base)}; linear layers (q, k, v, o, gate, up, down) for the '
                "overlaps, angles and bounds; random baselines in parentheses.</p>",
                _table(
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
            body.append(self._table2(s.get("table2")))
            figs = [(p, COMPARE_CAPTIONS.get(p.name)) for p in sorted(src.folder.glob("*.png"))]
            body.append(self.figures(figs))
            parts.append(
                f'<div class="card" id="{anchor}"><h3>Checkpoint comparison <span class="note">'
                f"{_e(src.rel)}/summary.json</span></h3><h4>Table 1: update sparsity</h4>"
                + "".join(body)
                + "</div>"
            )
        return "".join(parts)

    def _table2(self, t2: Any) -> str:
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
                f"<tr><td>{_e(t)}</td><td class='num'>{_e(fmt_num(r.get('jaccard'), 3))}</td>"
                f"<td class='num'>{_e(fmt_num(r.get('random'), 3))}</td>"
                f"<td class='num'>{_e(fmt_num(r.get('ratio'), 3))}</td>"
                f"<td class='num'>{_e(fmt_num(r.get('tensors')))}</td></tr>"
                for t, r in rows_d.items()
                if isinstance(r, dict)
            ]
            out.append(
                f"<h4>Table 2: Jaccard of the update masks across tuned runs, {_e(title)}</h4>"
                + _table(
                    ["layer type", "Jaccard", "random pq/(p+q−pq)", "ratio", "tensors"],
                    rows,
                    (1, 2, 3, 4),
                    compact=True,
                )
            )
        return "".join(out)


def _tally(claims: list[ClaimRow]) -> str:
    boxes = [
        f'<div class="box"><div class="num">{len(claims)}</div><div class="lbl">claims checked</div></div>'
    ]
    for v in VERDICTS:
        k = sum(c.verdict == v for c in claims)
        boxes.append(
            f'<div class="box {v}"><div class="num">{k}</div><div class="lbl">{v}</div></div>'
        )
    return f'<div class="tally">{"".join(boxes)}</div>'


def _legend() -> str:
    return (
        '<div class="legend">'
        + "".join(f"<span>{_pill(v)} {_e(VERDICT_TEXT[v])}</span>" for v in VERDICTS)
        + "</div>"
    )


def build_report(
    found: Found,
    *,
    sim_catalog: dict[str, SimInfo] | None = None,
    generated: str | None = None,
    version: str | None = None,
) -> Report:
    """Render everything in `found` as one HTML page.

    Args:
      found: the result of `discover`.
      sim_catalog: known simulations in their canonical order (label and summary); those without a result
        are listed as not found.
      generated: a timestamp for the header (omitted when None, so the page is reproducible).
      version: the threegate version for the footer.
    """
    catalog = sim_catalog or {}
    page = _Page(found)
    verify_html = page.verify_sections()
    sims_html = page.sim_sections(catalog)
    study_html = page.study_sections()
    compare_html = page.compare_sections()

    missing = []
    if not found.verify:
        missing.append("theorem check (verify.jsonl): run `threegate verify --out DIR/verify`")
    seen = {str(s.result.get("sim")) for s in found.sims}
    absent = [f"{info.label} {name}" for name, info in catalog.items() if name not in seen]
    if absent:
        missing.append(f"simulations (result.json): {', '.join(absent)}")
    if not found.studies:
        missing.append("real-model study (study.json)")
    if not found.compares:
        missing.append("checkpoint comparisons (compare's summary.json)")

    sections = [
        ("claims", "Every claim and its verdict", None),
        ("verify", "The theorem check", verify_html),
        ("sims", "Simulations", sims_html),
        ("study", "The real-model study", study_html),
        ("compare", "Checkpoint comparisons", compare_html),
    ]
    present = [(a, t, h) for a, t, h in sections if h is None or h]
    toc = "".join(f'<li><a href="#{a}">{_e(t)}</a></li>' for a, t, _ in present)
    body = []
    if page.problems:
        items = "".join(f"<li><code>{_e(p)}</code></li>" for p in page.problems)
        body.append(
            f'<div class="problems" id="problems"><h2>{len(page.problems)} problem(s) reading the '
            f"outputs</h2><p>These files or entries were skipped; everything else is shown.</p>"
            f"<ul>{items}</ul></div>"
        )
    if missing:
        items = "".join(f"<li>{_e(m)}</li>" for m in missing)
        body.append(f'<div class="missing"><b>Not found in this folder</b><ul>{items}</ul></div>')
    n_sources = len(found.verify) + len(found.sims) + len(found.studies)
    body.append(
        '<section id="claims"><h2>Every claim and its verdict</h2>'
        f'<p class="note">{len(page.claims)} claims from {n_sources} source(s). Theorem rows come from '
        "<code>threegate verify</code> (a statement that fails as written is <i>disagrees</i>, with its "
        "corrected form); simulation and study rows report what a run observed, each number beside its "
        "baseline or confidence interval.</p>"
        + _legend()
        + (_claims_table(page.claims, True) if page.claims else "<p>No claims found.</p>")
        + "</section>"
    )
    for anchor, title, content in present[1:]:
        body.append(f'<section class="major" id="{anchor}"><h2>{_e(title)}</h2>{content}</section>')
    meta = [f"folder {_e(found.root.name or found.root)}"]
    if generated:
        meta.append(f"generated {_e(generated)}")
    foot = f"threegate {_e(version)}" if version else "threegate"
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>threegate report: {_e(found.root.name or 'results')}</title>"
        f"<style>{CSS}</style></head><body><main>"
        '<header class="top"><div class="kicker">threegate report</div>'
        f"<h1>Does RLVR learn off the principals?</h1><p class='sub'>{_e(PAPER)}: every claim under "
        "test, with its verdict.</p>"
        f'<p class="meta">{" · ".join(meta)}</p>{_tally(page.claims)}</header>'
        f'<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>'
        + "".join(body)
        + f"<footer>{foot} · one self-contained file: figures embedded, no external resources.</footer>"
        "</main></body></html>\n"
    )
    return Report(doc, page.claims, page.problems, missing)
