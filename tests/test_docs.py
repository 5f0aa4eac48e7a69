"""The documentation holds together: every relative link and image of the
project's Markdown files points to a file that exists, and every #anchor to
a heading of its target, named as GitHub names them. The README stays a
front page, linking every page of docs/, and every page of docs/ starts
with its title and links back to the README.

Read without a Markdown library: code blocks (fenced or indented) and code
spans are set aside first, since what they hold is not a link.
"""

import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FRONT_PAGE_MAX_LINES = 200

# Not the project's own Markdown: installed packages and generated output.
# Hidden directories (.git, .venv, .pytest_cache, ...) are skipped too.
NOT_OURS = {"node_modules", "build", "htmlcov", "instance", "test-artifacts"}

EXTERNAL = re.compile(r"(https?|mailto):", re.IGNORECASE)
FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
LIST_ITEM = re.compile(r" {0,3}([-*+]|\d{1,9}[.)])(\s|$)")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of nested brackets
    r"\(\s*(<[^>\n]*>|[^\s()]+)"  # (target
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"  # "title")
)
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.M)
HTML_LINK = re.compile(r"<(?:a|img|source)\b[^>]*?\s(?:href|src)=[\"']([^\"']*)[\"']")
HTML_ID = re.compile(r"<[a-z][^>]*?\s(?:id|name)=[\"']([^\"']+)[\"']", re.IGNORECASE)
ATX_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*$")


def markdown_files():
    """Every Markdown file of the project, sorted."""
    found = []
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if not name.startswith(".")
            and name not in NOT_OURS
            and not name.endswith(".egg-info")
        )
        found += [Path(directory) / name for name in files if name.endswith(".md")]
    return sorted(found)


def prose(text):
    """The text outside code blocks, as (first line number, paragraph) pairs;
    headings come one per paragraph."""
    paragraphs, lines, start = [], [], 0
    fence = None  # the opening fence of the code block we are in
    indented_code = in_list = False
    previous_blank = True

    def flush():
        if lines:
            paragraphs.append((start, "\n".join(lines)))
            lines.clear()

    for number, line in enumerate(text.splitlines(), 1):
        blank = not line.strip()
        opening = FENCE.match(line)
        if fence:
            if (
                opening
                and opening.group(1)[0] == fence[0]
                and len(opening.group(1)) >= len(fence)
                and not line.strip().strip(fence[0])
            ):
                fence = None
            continue
        if indented_code:
            if blank or line.startswith(("    ", "\t")):
                continue
            indented_code = False
        if opening:
            flush()
            fence = opening.group(1)
            continue
        if previous_blank and not in_list and line.startswith(("    ", "\t")):
            flush()
            indented_code = True
            continue
        previous_blank = blank
        if blank:
            flush()
            continue
        if LIST_ITEM.match(line):
            in_list = True
        elif not line.startswith((" ", "\t")):
            in_list = False
        if ATX_HEADING.match(line):
            flush()
            paragraphs.append((number, line))
            continue
        if not lines:
            start = number
        lines.append(line)
    flush()
    return paragraphs


def without_code_spans(paragraph):
    """The paragraph with its code spans blanked out (lengths kept, so that
    positions still give line numbers)."""
    return CODE_SPAN.sub(lambda span: re.sub(r"[^\n]", " ", span.group()), paragraph)


def links(text):
    """(line number, target) of every link and image in Markdown `text`."""
    found = []
    for start, paragraph in prose(text):
        paragraph = HTML_COMMENT.sub(
            lambda comment: re.sub(r"[^\n]", " ", comment.group()), paragraph
        )
        paragraph = without_code_spans(paragraph)
        for pattern in (INLINE_LINK, REFERENCE_DEFINITION, HTML_LINK):
            for match in pattern.finditer(paragraph):
                line = start + paragraph.count("\n", 0, match.start())
                found.append((line, match.start(), match.group(1).strip("<>")))
    return [(line, target) for line, _, target in sorted(found)]


def slug(heading):
    """GitHub's anchor for a heading's text: lower case, punctuation dropped
    (all but hyphens and underscores), each space a hyphen."""
    text = rendered(heading).strip().lower()
    kept = "".join(
        character
        for character in text
        if character in " -_" or unicodedata.category(character)[0] in "LNM"
    )
    return kept.replace(" ", "-")


def rendered(heading):
    """The text a heading renders: code spans' text without their backticks,
    links' text, no emphasis markers or HTML tags."""
    text = re.sub(r"(`+)(.+?)\1", r"\2", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"(\*{1,3}|(?<!\w)_{1,3})(\S(?:.*?\S)?)\1", r"\2", text)


def anchors(text):
    """Every anchor a file offers: its headings' slugs, numbered as GitHub
    numbers repeated ones (-1, -2, ...), and ids of HTML elements."""
    headings = []
    for _, paragraph in prose(text):
        lines = paragraph.split("\n")
        heading = ATX_HEADING.match(lines[0])
        if heading:
            headings.append(heading.group(1) or "")
        elif len(lines) > 1 and SETEXT_UNDERLINE.match(lines[-1]):
            headings.append(" ".join(lines[:-1]))
    found = set()
    for heading in headings:
        name, repeat = slug(heading), 0
        while (f"{name}-{repeat}" if repeat else name) in found:
            repeat += 1
        found.add(f"{name}-{repeat}" if repeat else name)
    ids = HTML_ID.findall(HTML_COMMENT.sub("", text))
    return found | {name.lower() for name in ids}


def broken_links(path):
    """What is wrong with each relative link of the Markdown file `path`."""
    problems = []
    for line, target in links(path.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        where, _, anchor = target.partition("#")
        linked = linked_file(path, where) if where else path
        if not linked.exists():
            problems.append(f"line {line}: {target}: no such file")
        elif anchor and linked.suffix == ".md":
            if unquote(anchor).lower() not in anchors(linked.read_text("utf-8")):
                problems.append(f"line {line}: {target}: no such heading")
    return problems


def linked_file(path, where):
    """The file a link `where` (no anchor) of the Markdown file `path` names:
    relative to that file, or to the repository with a leading /."""
    where = unquote(where)
    if where.startswith("/"):
        return (ROOT / where.lstrip("/")).resolve()
    return (path.parent / where).resolve()


def linked_files(path):
    """The files the Markdown file `path` links to."""
    return {
        linked_file(path, target.partition("#")[0])
        for _, target in links(path.read_text(encoding="utf-8"))
        if not EXTERNAL.match(target) and target.partition("#")[0]
    }


def relative(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", markdown_files(), ids=relative)
def test_every_relative_link_and_anchor_resolves(path):
    problems = broken_links(path)

    assert not problems, f"{relative(path)}:\n" + "\n".join(problems)


def test_the_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert (
        lines < FRONT_PAGE_MAX_LINES
    ), f"README.md has {lines} lines: move reference into docs/"


def test_the_readme_links_every_page_of_the_docs():
    pages = {
        *DOCS.rglob("*.md"),
        ROOT / "benchmarks" / "README.md",
        ROOT / "tests" / "README.md",
    }

    unlinked = {page.resolve() for page in pages} - linked_files(README)

    assert sorted(map(relative, unlinked)) == []


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=relative)
def test_a_page_of_the_docs_starts_with_its_title_and_links_back(page):
    text = page.read_text(encoding="utf-8")

    assert text.startswith("# ")
    assert README.resolve() in linked_files(page)


# The reading itself


def test_slugs_follow_githubs_rules():
    assert slug("Socket.IO protocol (namespace `/`)") == "socketio-protocol-namespace-"
    assert slug("What is accepted") == "what-is-accepted"
    assert (
        slug("A **bold** [link](x.md) and `code_name`") == "a-bold-link-and-code_name"
    )
    assert slug("한국어 채널") == "한국어-채널"
    assert anchors("# Deploy\n\n## Deploy\n\n## Deploy\n") == {
        "deploy",
        "deploy-1",
        "deploy-2",
    }


def test_links_in_code_are_not_links():
    text = (
        "A [real](a.md) link, `[not](b.md)` in code.\n\n"
        "```\n[fenced](c.md)\n```\n\n"
        "    [indented](d.md)\n\n"
        "- a list\n\n"
        '![image](e.png) <img src="f.png" alt="">\n'
    )

    assert links(text) == [(1, "a.md"), (11, "e.png"), (11, "f.png")]


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Some part\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#some-part) [fine too](#page) [web](https://example.com)\n"
        "[gone](missing.md) [no part](other.md#another-part) [nor here](#nowhere)\n"
    )

    assert broken_links(page) == [
        "line 4: missing.md: no such file",
        "line 4: other.md#another-part: no such heading",
        "line 4: #nowhere: no such heading",
    ]
    assert linked_files(page) == {
        (tmp_path / "other.md").resolve(),
        (tmp_path / "missing.md").resolve(),
    }
