"""Every relative link in the README and docs/ leads somewhere, so the tour cannot rot.

A link's file must exist, and a `#fragment` must name a heading of the target as GitHub slugs
it: lowercase, punctuation dropped except hyphens and underscores, each space a hyphen, a repeated
heading suffixed -1, -2, ... Links inside code are not links. Comments in the compose files, the
Makefile and .env.example that name a page under docs/ are held to the same rule. No network:
absolute URLs are not followed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# A page under docs/ named in a comment of a file that is not Markdown.
DOCS_MENTION = re.compile(r"(?<![\w/.])(docs/[\w.-]+\.md)(#[\w-]+)?")
COMMENTED_FILES = ("docker-compose*.yml", "Makefile", ".env.example")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every fragment a link into this Markdown file may name."""
    found: set[str] = set()
    seen: Counter[str] = Counter()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            found.add(f"{base}-{seen[base]}" if seen[base] else base)
            seen[base] += 1
    return found


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file, in order."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        targets += INLINE_LINK.findall(line)
        reference = REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
    return targets


def problem(source: Path, target: str) -> str | None:
    """Why a relative link from `source` is broken, or None when it resolves."""
    if SCHEME.match(target) or target.startswith("//"):
        return None  # an absolute URL: not followed
    file_part, _, fragment = target.partition("#")
    destination = (source.parent / unquote(file_part)).resolve() if file_part else source
    if not destination.exists():
        return f"{target}: no such file"
    if fragment and destination.suffix == ".md" and unquote(fragment) not in anchors(destination):
        return f"{target}: no heading with that anchor in {destination.name}"
    return None


def broken_links(pages: list[Path]) -> list[str]:
    return [
        f"{page.relative_to(REPO) if page.is_relative_to(REPO) else page}: {why}"
        for page in pages
        for target in links(page)
        if (why := problem(page, target))
    ]


def broken_mentions(root: Path, files: list[Path]) -> list[str]:
    """Pages under docs/ named in comments of the compose files or the Makefile."""
    found = []
    for path in files:
        for match in DOCS_MENTION.finditer(path.read_text(encoding="utf-8")):
            why = problem(root / "README.md", match.group(1) + (match.group(2) or ""))
            if why:
                found.append(f"{path.name}: {why}")
    return found


def markdown_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def commented_files() -> list[Path]:
    return sorted(path for pattern in COMMENTED_FILES for path in REPO.glob(pattern))


def test_every_relative_link_and_anchor_resolves() -> None:
    pages = markdown_pages()
    assert len(pages) > 2, "the README and docs/ should be here"
    assert sum(len(links(page)) for page in pages) > 20, "the link reader found almost nothing"
    broken = broken_links(pages)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_named_in_a_comment_exists() -> None:
    files = commented_files()
    assert REPO / "docker-compose.yml" in files
    broken = broken_mentions(REPO, files)
    assert not broken, "comments naming a missing page:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("ZooKeeper (default), KRaft", "zookeeper-default-kraft"),
        ("Delivery: exactly once, never stalled", "delivery-exactly-once-never-stalled"),
        ("Kafka (kafka-python 3.0.12)", "kafka-kafka-python-3012"),
        ("`make demo`, step by step", "make-demo-step-by-step"),
        ("The [NiFi](nifi.md) flow", "the-nifi-flow"),
        ("CONSUMER_BATCH_SIZE and friends", "consumer_batch_size-and-friends"),
        ("Two  spaces", "two--spaces"),
    ],
)  # fmt: skip
def test_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checker_catches_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Part one\n\n## Part one\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/page.md) [ok](docs/page.md#part-one) [ok](docs/page.md#part-one-1)\n"
        "[ok](#tour) [ok](https://example.com/x#y) `[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        "# Tour\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#part-two) [self](#nowhere)\n"
        "[ref]: docs/also-missing.md\n"
    )
    assert broken_links([readme]) == [
        f"{readme}: docs/missing.md: no such file",
        f"{readme}: docs/page.md#part-two: no heading with that anchor in page.md",
        f"{readme}: #nowhere: no heading with that anchor in README.md",
        f"{readme}: docs/also-missing.md: no such file",
    ]
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("# see docs/page.md, docs/page.md#part-one and docs/stack-draft.md\n")
    assert broken_mentions(tmp_path, [compose]) == [
        "docker-compose.yml: docs/stack-draft.md: no such file"
    ]
