"""The card's tested code blocks: a ```python block of README.md that starts with `# snippet: NAME`.
The tests run them as users paste them, and the benchmark measures the training streams they define,
so both read them here."""

import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_snippets(readme: str = README) -> dict:
    """{name: code} of every snippet block; a name used twice is an error."""
    with open(readme, encoding="utf-8") as handle:
        blocks = re.findall(r"```python\n(# snippet: (\w+)\n.*?)```", handle.read(), flags=re.S)
    names = [name for _, name in blocks]
    if len(names) != len(set(names)):
        raise ValueError(f"{readme} names a snippet twice: {names}")
    return {name: code for code, name in blocks}


def run_readme_snippets(*names: str, readme: str = README) -> dict:
    """One namespace with these snippets run in order, as a user would paste them."""
    snippets, namespace = readme_snippets(readme), {}
    for name in names:
        exec(snippets[name], namespace)  # noqa: S102 - the card's own code, run as users run it
    return namespace
