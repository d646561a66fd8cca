"""The report's stylesheet: inline, system fonts only, with print rules (page breaks between sections,
rows and figures never cut, table headers repeated on each printed page)."""

__all__ = ["CSS"]

CSS = """
:root {
  --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0b5cad;
  --agree: #116329; --agree-bg: #dafbe1; --disagree: #a40e26; --disagree-bg: #ffebe9;
  --unsure: #7d4e00; --unsure-bg: #fff8c5;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 48px; }
header.top { border-bottom: 3px solid var(--ink); padding-bottom: 14px; margin-bottom: 18px; }
h1 { font-size: 28px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 22px; margin: 0 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 18px; margin: 26px 0 6px; }
h4 { font-size: 15px; margin: 18px 0 6px; }
h5, h6 { font-size: 14px; margin: 14px 0 4px; }
p { margin: 6px 0 10px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.sub { color: var(--muted); margin: 0; font-size: 16px; }
.meta { color: var(--muted); font-size: 13px; margin: 6px 0 0; }
.note { color: var(--muted); font-size: 13.5px; }
.url { color: var(--muted); font-size: 12.5px; word-break: break-all; }
section { margin: 30px 0 0; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px;
  font-size: 14px; }
nav.toc ol { margin: 4px 0; padding-left: 22px; columns: 2; column-gap: 32px; }
.tally { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 4px; }
.tally .box { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 130px; }
.tally .num { font-size: 24px; font-weight: 700; line-height: 1.1; }
.tally .lbl { font-size: 12.5px; color: var(--muted); }
.tally .agrees { border-color: var(--agree); background: var(--agree-bg); }
.tally .agrees .num { color: var(--agree); }
.tally .disagrees { border-color: var(--disagree); background: var(--disagree-bg); }
.tally .disagrees .num { color: var(--disagree); }
.tally .inconclusive { border-color: #d4a72c; background: var(--unsure-bg); }
.tally .inconclusive .num { color: var(--unsure); }
.tablewrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
thead th { background: var(--soft); border-bottom: 2px solid var(--line); font-weight: 600; }
table.compact { width: auto; min-width: 50%; }
table.compact td, table.compact th { padding-right: 22px; }
td.num, th.num, td.right, th.right { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td.center, th.center { text-align: center; }
td.id { white-space: nowrap; font-weight: 600; }
td.src { white-space: nowrap; font-size: 12.5px; }
td.paper { min-width: 220px; }
td.obs { min-width: 260px; }
tr.agrees td:first-child { box-shadow: inset 4px 0 0 var(--agree); }
tr.disagrees td:first-child { box-shadow: inset 4px 0 0 var(--disagree); }
tr.inconclusive td:first-child { box-shadow: inset 4px 0 0 #d4a72c; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600;
  white-space: nowrap; border: 1px solid transparent; }
.pill.agrees { color: var(--agree); background: var(--agree-bg); border-color: #4ac26b; }
.pill.disagrees { color: var(--disagree); background: var(--disagree-bg); border-color: #ff8182; }
.pill.inconclusive { color: var(--unsure); background: var(--unsure-bg); border-color: #d4a72c; }
.legend { display: flex; flex-wrap: wrap; gap: 18px; font-size: 13px; color: var(--muted); margin: 4px 0 8px; }
.corrected { color: var(--agree); font-size: 12.5px; margin-top: 3px; }
code, pre { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12.5px; }
code { background: var(--soft); padding: 0 3px; border-radius: 3px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px;
  white-space: pre-wrap; word-break: break-word; margin: 6px 0 12px; }
pre code { background: none; padding: 0; }
td pre { margin: 0; padding: 4px 6px; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 4px 18px 10px; margin: 18px 0; }
.card > h3 { margin-top: 12px; }
.kicker { font-size: 12px; font-weight: 700; color: var(--muted); letter-spacing: 0.06em; text-transform: uppercase; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 16px; margin: 10px 0; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
figcaption b { color: var(--ink); font-weight: 600; }
.md img { max-width: 100%; height: auto; }
blockquote { margin: 8px 0; padding: 2px 14px; border-left: 4px solid var(--line); color: var(--muted); }
.problems { border: 1px solid var(--disagree); background: var(--disagree-bg); border-radius: 8px;
  padding: 8px 16px; margin: 16px 0; }
.problems h2 { border: none; font-size: 17px; color: var(--disagree); margin: 4px 0; }
.missing { border: 1px dashed var(--line); border-radius: 8px; padding: 6px 16px; margin: 16px 0;
  color: var(--muted); font-size: 13.5px; }
.missing ul, .problems ul { margin: 4px 0 6px; padding-left: 20px; }
footer { margin-top: 40px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted);
  font-size: 12.5px; }
@media (max-width: 720px) {
  main { padding: 16px; }
  .figs { grid-template-columns: 1fr; }
  nav.toc ol { columns: 1; }
}
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  section.major { break-before: page; page-break-before: always; }
  tr, figure, .card > h3, pre, .tally { break-inside: avoid; page-break-inside: avoid; }
  h2, h3, h4 { break-after: avoid; page-break-after: avoid; }
  thead { display: table-header-group; }
  .tablewrap { overflow: visible; }
  table { font-size: 8.5pt; }
  .figs { display: block; }
  figure { margin: 0 0 10px; }
  figure img { max-height: 230mm; }
  a { color: inherit; }
  .pill, tr td:first-child, .tally .box { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
