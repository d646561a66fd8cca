"""The report page: one self-contained HTML document from what `discover` found.

Layout, top to bottom: the tally of verdicts; problems (unreadable files) and what was not found; **every claim
of every source in one table** with a legend; the theorem check (table, errata with their exact counter-examples,
the Tables 4/5 arithmetic); each simulation's claims and figures; the real-model study's report; each `compare`
run's Tables 1/2 and figures. Every string from a file is HTML-escaped; figures are embedded as `data:` URIs;
nothing refers outside the page.
"""

from typing import NamedTuple

from threegate.claims import VERDICTS
from threegate.report._html import Context, claims_table, esc, pill
from threegate.report.claims import ClaimRow
from threegate.report.discover import Found
from threegate.report.sources_html import (
    COMPARE_CAPTIONS,
    SimInfo,
    compare_sections,
    sim_sections,
    study_sections,
)
from threegate.report.style import CSS
from threegate.report.verify_html import verify_sections

__all__ = ["COMPARE_CAPTIONS", "Report", "SimInfo", "build_report"]

PAPER = "The Path Not Taken: RLVR Provably Learns Off the Principals (Zhu et al., arXiv 2511.08567)"

VERDICT_TEXT = {
    "agrees": "the run reproduces what the paper claims",
    "disagrees": "the run contradicts the claim as stated (for theorems: the stated form fails; "
    "see the corrected form)",
    "inconclusive": "the evidence does not decide (interval straddles the baseline, or too few runs)",
}


class Report(NamedTuple):
    """The page and what went into it (claims in page order, problems met, pieces not found)."""

    html: str
    claims: list[ClaimRow]
    problems: list[str]  # one line each: unreadable files and malformed entries
    missing: list[str]  # what was looked for and not found


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
        + "".join(f"<span>{pill(v)} {esc(VERDICT_TEXT[v])}</span>" for v in VERDICTS)
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
    page = Context(found)
    verify_html = verify_sections(page)
    sims_html = sim_sections(page, catalog)
    study_html = study_sections(page)
    compare_html = compare_sections(page)

    missing = _missing(found, catalog)

    sections = [
        ("claims", "Every claim and its verdict", None),
        ("verify", "The theorem check", verify_html),
        ("sims", "Simulations", sims_html),
        ("study", "The real-model study", study_html),
        ("compare", "Checkpoint comparisons", compare_html),
    ]
    present = [(a, t, h) for a, t, h in sections if h is None or h]
    toc = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t, _ in present)
    body = [*_notices(page, missing), _claims_section(page, found)]
    for anchor, title, content in present[1:]:
        body.append(
            f'<section class="major" id="{anchor}"><h2>{esc(title)}</h2>{content}</section>'
        )
    meta = [f"folder {esc(found.root.name or found.root)}"]
    if generated:
        meta.append(f"generated {esc(generated)}")
    foot = f"threegate {esc(version)}" if version else "threegate"
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>threegate report: {esc(found.root.name or 'results')}</title>"
        f"<style>{CSS}</style></head><body><main>"
        '<header class="top"><div class="kicker">threegate report</div>'
        f"<h1>Does RLVR learn off the principals?</h1><p class='sub'>{esc(PAPER)}: every claim under "
        "test, with its verdict.</p>"
        f'<p class="meta">{" · ".join(meta)}</p>{_tally(page.claims)}</header>'
        f'<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>'
        + "".join(body)
        + f"<footer>{foot} · one self-contained file: figures embedded, no external resources.</footer>"
        "</main></body></html>\n"
    )
    return Report(doc, page.claims, page.problems, missing)


def _missing(found: Found, catalog: dict[str, SimInfo]) -> list[str]:
    """What the folder lacks, each with how to make it."""
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
    return missing


def _notices(page: Context, missing: list[str]) -> list[str]:
    """The boxes above the claims: files that could not be read, and outputs not found."""
    body = []
    if page.problems:
        items = "".join(f"<li><code>{esc(p)}</code></li>" for p in page.problems)
        body.append(
            f'<div class="problems" id="problems"><h2>{len(page.problems)} problem(s) reading the '
            f"outputs</h2><p>These files or entries were skipped; everything else is shown.</p>"
            f"<ul>{items}</ul></div>"
        )
    if missing:
        items = "".join(f"<li>{esc(m)}</li>" for m in missing)
        body.append(f'<div class="missing"><b>Not found in this folder</b><ul>{items}</ul></div>')
    return body


def _claims_section(page: Context, found: Found) -> str:
    n_sources = len(found.verify) + len(found.sims) + len(found.studies)
    return (
        '<section id="claims"><h2>Every claim and its verdict</h2>'
        f'<p class="note">{len(page.claims)} claims from {n_sources} source(s). Theorem rows come from '
        "<code>threegate verify</code> (a statement that fails as written is <i>disagrees</i>, with its "
        "corrected form); simulation and study rows report what a run observed, each number beside its "
        "baseline or confidence interval.</p>"
        + _legend()
        + (claims_table(page.claims, True) if page.claims else "<p>No claims found.</p>")
        + "</section>"
    )
