"""The docs a newcomer reads first: every relative link in them leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(REPO.glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+\s+(.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if path and not (doc.parent / path).exists():
            broken.append(target)
        elif not path and anchor not in anchors(text):
            broken.append(target)
    assert not broken, f"{doc.name}: links to nothing: {broken}"
