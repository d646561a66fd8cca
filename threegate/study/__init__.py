"""The paper's checkpoint experiments on a set of runs (Tables 1–2, Figs 2–5, Gate II), built on `compare`."""

from threegate.study.analyse import Run as Run
from threegate.study.analyse import StudyConfig as StudyConfig
from threegate.study.analyse import analyse as analyse

__all__ = ["Run", "StudyConfig", "analyse"]
