"""HTML helpers shared by the report's sections: escaping, tables, verdict pills, embedded figures."""

import html
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from threegate.report.claims import ClaimRow
from threegate.report.discover import Found
from threegate.report.embed import Embedded, read_png

__all__ = ["Context", "claims_table", "esc", "pill", "slug", "table"]


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def slug(*parts: str) -> str:
    """The id of a source's card: "src-" + the parts in lowercase words (never equal to a section's id)."""
    words = (re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-").lower() for p in parts)
    return "-".join(["src", *(w for w in words if w)])


def pill(verdict: str) -> str:
    return f'<span class="pill {esc(verdict)}">{esc(verdict)}</span>'


def table(
    head: Sequence[str], rows: Iterable[str], num: Sequence[int] = (), compact: bool = False
) -> str:
    cls = ' class="compact"' if compact else ""
    ths = "".join(
        f'<th class="num">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>"
        for i, h in enumerate(head)
    )
    return (
        f'<div class="tablewrap"><table{cls}><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def claims_table(claims: list[ClaimRow], with_source: bool) -> str:
    rows = []
    for c in claims:
        src = (
            f'<td class="src"><a href="#{esc(c.anchor)}">{esc(c.source)}</a></td>'
            if with_source
            else ""
        )
        rows.append(
            f'<tr class="{esc(c.verdict)}">{src}<td class="id">{esc(c.id)}</td>'
            f'<td class="paper">{esc(c.paper)}</td><td class="obs">{esc(c.observed)}</td>'
            f"<td>{pill(c.verdict)}</td></tr>"
        )
    head = (["source"] if with_source else []) + ["claim", "paper", "observed", "verdict"]
    return table(head, rows)


class Context:
    """What the sections share while they render: the root, the claims collected, the problems met."""

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
            f'<img src="{got.uri}" alt="{esc(alt)}" width="{got.width}" height="{got.height}" '
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
        cap = f"<b>{esc(path.name)}</b>" + (f" — {esc(caption)}" if caption else "")
        return f"<figure{wide}>{self._tag(got, caption or path.name)}<figcaption>{cap}</figcaption></figure>"

    def figures(self, items: list[tuple[Path, str | None]]) -> str:
        figs = [f for f in (self.figure(p, c) for p, c in items) if f]
        return f'<div class="figs">{"".join(figs)}</div>' if figs else ""
