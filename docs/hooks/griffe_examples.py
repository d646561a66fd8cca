"""Griffe extension for the manual: read a Google-style `Example:` section as griffe's `Examples:` section.

The docstrings follow the Google style with a singular `Example:` heading (as optax's do); griffe only treats
`Examples:` as code examples and renders `Example:` as an admonition of Markdown, where `>>>` lines would become
nested quotes. Only the heading is rewritten, in memory; the source and its doctests are untouched.
"""

import re

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        doc = obj.docstring
        if doc is not None and "Example:" in doc.value:
            doc.value = _HEADING.sub(r"\1Examples:", doc.value)
