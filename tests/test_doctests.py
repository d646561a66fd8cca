"""The docstring examples of the core math modules run as doctests (stdlib `doctest`), one test per module.

Each module's own docstrings are collected, plus those of the public names it re-exports (`threegate.spectral`
re-exports `threegate.spectral._subspace` and `threegate.spectral._checks`). A test fails on any failing example, and
also when a public function defined in the module has no example, so an example cannot be dropped silently.
"""

import doctest
import importlib
import inspect
import sys

import pytest

MODULES = (
    "threegate.bf16",
    "threegate.kl",
    "threegate.masks",
    "threegate.spectral",
    "threegate.toy.rates",
    "threegate.toy.policy",
    "threegate.toy.natural_step",
    "threegate.claims",
    "threegate.stored",
    "threegate.records",
    "threegate.stats",
)

_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _public(module):
    """(name, object, the function or class under any jit/wraps layer) for each name in `__all__`."""
    for name in module.__all__:
        obj = getattr(module, name)
        yield name, obj, inspect.unwrap(obj)


def _tests(module) -> list[doctest.DocTest]:
    """The module docstring's examples and those of every public name (`__all__`), re-exports included."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {t.name: t for t in finder.find(module, module.__name__)}
    for name, obj, inner in _public(module):
        home = getattr(inner, "__module__", module.__name__)
        if home == module.__name__ or not (inspect.isfunction(inner) or inspect.isclass(inner)):
            continue  # found above, or a constant
        globs = dict(vars(sys.modules[home]))
        for t in finder.find(obj, f"{module.__name__}.{name}", module=False, globs=globs):
            found.setdefault(t.name, t)
    return sorted(found.values(), key=lambda t: t.name)


def _own_functions_without_example(module) -> list[str]:
    parser = doctest.DocTestParser()
    return [
        name
        for name, obj, inner in _public(module)
        if inspect.isfunction(inner)
        and inner.__module__ == module.__name__
        and not parser.get_examples(inspect.getdoc(obj) or "")
    ]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    tests = _tests(module)
    assert sum(len(t.examples) for t in tests) > 0, f"{name} has no docstring examples"
    assert not _own_functions_without_example(module), (
        f"{name}: public functions without an example: {_own_functions_without_example(module)}"
    )
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    report: list[str] = []
    for t in tests:
        runner.run(t, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
