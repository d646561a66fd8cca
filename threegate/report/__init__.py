"""`threegate report`: one self-contained HTML page of every claim of the paper and its verdict, from whatever
threegate outputs a folder holds (theorem check, simulations, real-model study, checkpoint comparisons).

`discover(root)` finds and reads the outputs (never failing on one bad file); `build_report(found)` renders the
page; `render_markdown` is the safe Markdown subset used for the study's `report.md`.
"""

from threegate.report.claims import VERDICTS as VERDICTS
from threegate.report.claims import ClaimRow as ClaimRow
from threegate.report.discover import Found as Found
from threegate.report.discover import Problem as Problem
from threegate.report.discover import discover as discover
from threegate.report.markdown import render_markdown as render_markdown
from threegate.report.page import Report as Report
from threegate.report.page import SimInfo as SimInfo
from threegate.report.page import build_report as build_report

__all__ = [
    "VERDICTS",
    "ClaimRow",
    "Found",
    "Problem",
    "Report",
    "SimInfo",
    "build_report",
    "discover",
    "render_markdown",
]
