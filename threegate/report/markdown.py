"""A small, safe Markdown-subset renderer: everything is escaped, only the subset becomes tags.

Blocks: ATX headings (`#`…`######`), fenced code (```` ``` ````), pipe tables (header row, `---` separator row),
lists (`-`, `*`, `+`, `1.`; one level), block quotes (`>`), rules (`---`), paragraphs. Inline: code spans,
`**strong**`, `*em*` / `_em_`, links (rendered as text with the target shown without its scheme; only in-page
`#anchors` stay links, so the page never points outside itself) and images (`![alt](file.png)`), whose source is resolved by the caller-given `image`
function: it returns an `<img>` element for a file it accepts, or None (the alt text is shown instead).

Raw HTML in the input is shown as text, never interpreted. A table cell that is exactly a verdict (agrees,
disagrees, inconclusive) becomes the report's coloured pill.
"""

import html
import re
from collections.abc import Callable

from threegate.claims import VERDICTS

__all__ = ["render_markdown"]

ImageFn = Callable[[str, str], str | None]

#: table cells holding exactly one of these words are shown as the report's coloured verdict pills

_FENCE = re.compile(r"^\s{0,3}(```|~~~)(.*)$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_ULIST = re.compile(r"^\s{0,3}[-*+]\s+(.*)$")
_OLIST = re.compile(r"^\s{0,3}\d{1,9}[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_INLINE = re.compile(
    r"(?P<code>`+)(?P<codetext>.+?)(?P=code)"
    r"|!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)"
    r"|\[(?P<text>[^\]]+)\]\((?P<href>[^)\s]+)\)"
)
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_EM = re.compile(
    r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])|(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"
)


def _emphasis(escaped: str) -> str:
    """Strong and emphasis on already-escaped text (so the only tags are the ones added here)."""
    escaped = _STRONG.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", escaped)
    return _EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", escaped)


def _inline(text: str, image: ImageFn) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(_emphasis(html.escape(text[pos : m.start()])))
        if m.group("code"):
            out.append(f"<code>{html.escape(m.group('codetext').strip())}</code>")
        elif m.group("src") is not None:
            tag = image(m.group("src"), m.group("alt"))
            out.append(tag if tag is not None else f"[{html.escape(m.group('alt') or 'image')}]")
        else:
            label = _emphasis(html.escape(m.group("text")))
            href = m.group("href")
            if re.fullmatch(r"#[\w.\-]+", href):
                out.append(f'<a href="{html.escape(href)}">{label}</a>')
            else:
                shown = re.sub(r"^[a-z][a-z0-9+.-]*://", "", href, flags=re.I)
                out.append(f'{label} <span class="url">({html.escape(shown)})</span>')
        pos = m.end()
    out.append(_emphasis(html.escape(text[pos:])))
    return "".join(out)


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", s)]


def _table(lines: list[str], image: ImageFn) -> str:
    head = _cells(lines[0])
    aligns = []
    for c in _cells(lines[1]):
        right, left = c.endswith(":"), c.startswith(":")
        aligns.append("center" if left and right else "right" if right else "")
    ncol = len(head)

    def row(cells: list[str], tag: str) -> str:
        cells = (cells + [""] * ncol)[:ncol]
        parts = []
        for i, c in enumerate(cells):
            al = aligns[i] if i < len(aligns) else ""
            style = f' class="{al}"' if al else ""
            if tag == "td" and c.strip().lower() in VERDICTS:
                word = c.strip().lower()
                parts.append(f'<td{style}><span class="pill {word}">{word}</span></td>')
            else:
                parts.append(f"<{tag}{style}>{_inline(c, image)}</{tag}>")
        return "<tr>" + "".join(parts) + "</tr>"

    body = "".join(row(_cells(line), "td") for line in lines[2:])
    return (
        '<div class="tablewrap"><table class="md">'
        f"<thead>{row(head, 'th')}</thead><tbody>{body}</tbody></table></div>"
    )


def _is_block_start(line: str, nxt: str | None) -> bool:
    return bool(
        _FENCE.match(line)
        or _HEADING.match(line)
        or _RULE.match(line)
        or _ULIST.match(line)
        or _OLIST.match(line)
        or _QUOTE.match(line)
        or ("|" in line and nxt is not None and _TABLE_SEP.match(nxt) and "-" in nxt)
    )


def render_markdown(text: str, image: ImageFn | None = None, heading_offset: int = 0) -> str:
    """HTML for the Markdown subset in `text`; headings are shifted down by `heading_offset` levels (max h6)."""
    image = image or (lambda src, alt: None)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < n else None
        if not line.strip():
            i += 1
            continue
        if m := _FENCE.match(line):
            fence, body = m.group(1), []
            i += 1
            while i < n and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end)
            out.append(f"<pre><code>{html.escape(chr(10).join(body))}</code></pre>")
        elif m := _HEADING.match(line):
            level = min(6, len(m.group(1)) + heading_offset)
            out.append(f"<h{level}>{_inline(m.group(2), image)}</h{level}>")
            i += 1
        elif _RULE.match(line):
            out.append("<hr>")
            i += 1
        elif "|" in line and nxt is not None and _TABLE_SEP.match(nxt) and "-" in nxt:
            block = [line, nxt]
            i += 2
            while i < n and lines[i].strip() and "|" in lines[i]:
                block.append(lines[i])
                i += 1
            out.append(_table(block, image))
        elif _ULIST.match(line) or _OLIST.match(line):
            pattern, tag = (_ULIST, "ul") if _ULIST.match(line) else (_OLIST, "ol")
            items: list[list[str]] = []
            while i < n and lines[i].strip():
                if m := pattern.match(lines[i]):
                    items.append([m.group(1)])
                elif items and lines[i].startswith((" ", "\t")):
                    items[-1].append(lines[i].strip())  # a continuation line of the item
                else:
                    break
                i += 1
            lis = "".join(f"<li>{_inline(' '.join(it), image)}</li>" for it in items)
            out.append(f"<{tag}>{lis}</{tag}>")
        elif _QUOTE.match(line):
            quoted = []
            while i < n and (m := _QUOTE.match(lines[i])):
                quoted.append(m.group(1))
                i += 1
            inner = render_markdown("\n".join(quoted), image, heading_offset)
            out.append(f"<blockquote>{inner}</blockquote>")
        else:
            para = [line.strip()]
            i += 1
            while i < n and lines[i].strip():
                if _is_block_start(lines[i], lines[i + 1] if i + 1 < n else None):
                    break
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para), image)}</p>")
    return "\n".join(out)
