"""Named sections that one bench script keeps inside a page another script writes.

`docs/results.md` is written by `bench/paper_claim.py`, but the real-speech benchmark's table
belongs on it too (a section of its own): the section sits between two HTML comments, the
real-speech script replaces only it, and the paper-claim writer carries every such section over
when it rewrites the page.
"""

from __future__ import annotations

import re

_SECTION = re.compile(r"<!-- section (?P<name>[\w-]+) -->\n.*?<!-- end (?P=name) -->\n", re.S)


def wrap(name: str, body: str) -> str:
    """`body` as the section `name`, markers included."""
    return f"<!-- section {name} -->\n{body.rstrip()}\n<!-- end {name} -->\n"


def sections(text: str) -> list[str]:
    """Every section of `text`, markers included, in page order."""
    return [m.group(0) for m in _SECTION.finditer(text)]


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with section `name` set to `body` (appended at the end when it has none)."""
    new = wrap(name, body)
    pattern = re.compile(
        rf"<!-- section {re.escape(name)} -->\n.*?<!-- end {re.escape(name)} -->\n", re.S
    )
    if pattern.search(text):
        return pattern.sub(lambda _: new, text, count=1)
    return text.rstrip("\n") + "\n\n" + new
