"""The dataset card (README.md) and the deep dives it links to (docs/*.md), read as a user reads them on
the Hub: the card stays short, the newcomer commands open it, every relative link lands on a file and a
heading that exist, and every tested snippet is defined exactly once."""

import glob
import os
import re

from helpers import ROOT, readme_snippets

README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MAX_CARD_LINES = 460
DEMO_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && .venv/bin/python scripts/demo.py"
)
FENCED = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def without_code(text: str) -> str:
    """The Markdown a reader sees as prose: fenced blocks and inline code spans removed."""
    return re.sub(r"`[^`]*`", "", FENCED.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, punctuation other than '-' and '_'
    dropped, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: str) -> set:
    """Every heading anchor of a Markdown file, repeated headings numbered as GitHub does (-1, -2, ...)."""
    seen, found = {}, set()
    for line in FENCED.sub("", read(path)).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return found


def relative_links(path: str) -> list:
    return [target for target in LINK.findall(without_code(read(path))) if not re.match(r"^[a-zA-Z][\w+.-]*:", target)]


def test_slug_follows_githubs_rule():
    assert slug("TRL / Accelerate") == "trl--accelerate"
    assert slug("The `ddp` snippet") == "the-ddp-snippet"
    assert slug("Training with the Qwen3-VL processor") == "training-with-the-qwen3-vl-processor"
    assert slug("Downloads, cache and retries") == "downloads-cache-and-retries"


def test_the_card_is_short():
    with open(README, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert len(lines) <= MAX_CARD_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_card_opens_with_the_demo_and_the_test_command_ci_runs():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as handle:
        ci_command = [line for line in handle.read().splitlines() if "pytest" in line and not line.startswith("#")][-1]
    blocks = FENCED.findall(read(README))
    assert [(info, code) for info, code in blocks[:2]] == [("bash", DEMO_COMMAND + "\n"), ("bash", ci_command + "\n")]


def test_every_relative_link_lands_on_a_file_and_heading():
    assert DOCS, "docs/ holds the card's deep dives"
    for path in [README, *DOCS]:
        for target in relative_links(path):
            file_part, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            where = f"{os.path.relpath(path, ROOT)} links to {target!r}"
            assert os.path.commonpath([ROOT, linked]) == ROOT, f"{where}: outside the repository"
            assert os.path.exists(linked), f"{where}: no such file"
            if anchor:
                assert linked.endswith(".md") and anchor in anchors(linked), f"{where}: no such heading"


def test_every_doc_is_linked_from_the_card_and_back():
    linked = {os.path.normpath(os.path.join(ROOT, target.partition("#")[0])) for target in relative_links(README)}
    for doc in DOCS:
        assert doc in linked, f"the card does not link to {os.path.relpath(doc, ROOT)}"
        back = {os.path.normpath(os.path.join(os.path.dirname(doc), t.partition("#")[0])) for t in relative_links(doc)}
        assert README in back, f"{os.path.relpath(doc, ROOT)} does not link back to the card"


def test_every_snippet_is_defined_once_and_read_by_the_tests():
    names = []
    for path in [README, *DOCS]:
        text = read(path)
        in_python = [code.split("\n", 1)[0] for info, code in FENCED.findall(text) if info == "python"]
        marked = re.findall(r"^# snippet: (\w+)$", text, flags=re.M)
        assert [line for line in in_python if line.startswith("# snippet:")] == [f"# snippet: {name}" for name in marked], (
            f"{os.path.relpath(path, ROOT)}: a `# snippet:` line that does not open a ```python block is never tested"
        )
        names += marked
    assert len(names) == len(set(names)), f"a snippet name is defined twice: {sorted(names)}"
    assert sorted(readme_snippets()) == sorted(names)
