"""Numerical checks of all 24 numbered results of arXiv 2511.08567, one module per result.

`REGISTRY` maps the paper's number to the module that checks it, in paper order; modules are imported lazily by
`load`, so a missing or broken checker affects only its own result. The module contract is in `harness`.
"""

import importlib
from types import ModuleType
from typing import Final

from threegate.errors import ThreegateError

__all__ = ["REGISTRY", "CheckerMissingError", "load"]

REGISTRY: Final[dict[str, str]] = {
    "3.1": "prop_3_1",
    "3.2": "prop_3_2",
    "3.3": "thm_3_3",
    "3.4": "cor_3_4",
    "3.5": "cor_3_5",
    "3.6": "cor_3_6",
    "D.1": "prop_d_1",
    "E.1": "lemma_e_1",
    "E.2": "lemma_e_2",
    "E.3": "prop_e_3",
    "E.4": "cor_e_4",
    "F.1": "lemma_f_1",
    "F.2": "lemma_f_2",
    "F.3": "lemma_f_3",
    "F.4": "lemma_f_4",
    "F.5": "lemma_f_5",
    "F.6": "lemma_f_6",
    "F.7": "lemma_f_7",
    "F.8": "cor_f_8",
    "F.9": "lemma_f_9",
    "F.10": "lemma_f_10",
    "F.11": "lemma_f_11",
    "F.12": "lemma_f_12",
    "F.13": "cor_f_13",
}


class CheckerMissingError(ThreegateError, LookupError):
    """A registered result whose checker module (or a module it needs) is not there yet."""


def load(id: str) -> ModuleType:
    """The checker module of result `id` ("3.3").

    Raises:
      KeyError: `id` is not a numbered result of the paper.
      CheckerMissingError: its module, or a threegate module it imports, does not exist.
    """
    if id not in REGISTRY:
        raise KeyError(f"unknown result {id!r}; known: {', '.join(REGISTRY)}")
    name = f"{__name__}.{REGISTRY[id]}"
    try:
        return importlib.import_module(name)
    # ModuleNotFoundError, or a name missing from a module still being written
    except ImportError as err:
        if err.name == name:
            raise CheckerMissingError(
                f"result {id}: checker {name} is not implemented yet"
            ) from err
        if err.name and err.name.split(".")[0] in ("threegate", "proofs_numeric"):
            raise CheckerMissingError(
                f"result {id}: checker {name} needs {err.name}, which is missing"
            ) from err
        raise
