"""The card's tested code blocks: a ```python block that starts with `# snippet: NAME`, in README.md
or in one of the deep dives it links to (docs/*.md). The tests run them as users paste them, and the
benchmark measures the training streams they define, so both read them here."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
SNIPPET = re.compile(r"```python\n(# snippet: (\w+)\n.*?)```", flags=re.S)


def card_files(readme=README) -> list:
    """The files snippets live in: README.md, then every docs/*.md beside it, sorted. `readme` is the
    card's path (its docs/ are read too), the repository root, or an explicit list of files."""
    if isinstance(readme, (list, tuple)):
        return [os.fspath(path) for path in readme]
    readme = os.fspath(readme)
    if os.path.isdir(readme):
        readme = os.path.join(readme, "README.md")
    return [readme, *sorted(glob.glob(os.path.join(os.path.dirname(readme), "docs", "*.md")))]


def readme_snippets(readme=README) -> dict:
    """{name: code} of every snippet block of the card and its docs; a name used twice is an error."""
    snippets, where = {}, {}
    for path in card_files(readme):
        with open(path, encoding="utf-8") as handle:
            for code, name in SNIPPET.findall(handle.read()):
                if name in snippets:
                    raise ValueError(f"snippet {name!r} is defined twice: in {where[name]} and in {path}")
                snippets[name], where[name] = code, path
    return snippets


def run_readme_snippets(*names: str, readme=README) -> dict:
    """One namespace with these snippets run in order, as a user would paste them."""
    snippets, namespace = readme_snippets(readme), {}
    for name in names:
        exec(snippets[name], namespace)  # noqa: S102 - the card's own code, run as users run it
    return namespace
