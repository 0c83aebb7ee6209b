"""Griffe extension: render the Sphinx roles in the package's docstrings (``:class:`Name```) as inline code."""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _render(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(Extension):
    """Rewrite ``:role:`target``` as ```target``` (``~`` keeps the last component) in every docstring."""

    def on_package(self, *, pkg: Object, **kwargs: Any) -> None:
        stack = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(_render, obj.docstring.value)
            stack.extend(member for member in obj.members.values() if isinstance(member, Object))
