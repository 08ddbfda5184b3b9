"""The docs a newcomer reads first: every relative link in them leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(REPO.glob("*.md"))
# [text](target) and [text](target "title"), and reference definitions: [name]: target
INLINE_LINK = re.compile(r"""\]\(\s*<?([^)\s>]+)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)""")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings: lower case, punctuation dropped, spaces to dashes,
    and a repeated heading numbered (-1, -2, ...)."""
    found: set[str] = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*#*$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = 0
        while (numbered := slug if count == 0 else f"{slug}-{count}") in found:
            count += 1
        found.add(numbered)
    return found


def broken_links(doc: Path, text: str) -> list[str]:
    """The relative links in `text` (the content of `doc`) that lead to no file or heading."""
    broken = []
    for target in INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text):
        if re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            linked_text = text if linked == doc else linked.read_text()
            if anchor not in anchors(linked_text):
                broken.append(target)
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = broken_links(doc, doc.read_text())
    assert not broken, f"{doc.name}: links to nothing: {broken}"


def test_the_check_catches_a_link_one_folder_too_high_and_a_missing_heading() -> None:
    readme = REPO / "README.md"
    text = (
        "Paste [`slack/manifest.json`](../slack/manifest.json 'the manifest'), see [x](#nowhere)"
        " and [Speed](#speed).\n\n[manifest]: slack/manifest.json\n[gone]: <slack/gone.json>\n"
        "## Speed\n"
    )
    assert broken_links(readme, text) == ["../slack/manifest.json", "#nowhere", "slack/gone.json"]
