"""The package's layers (arr_coc/__init__.py): a module imports only its own layer and the layers below."""

import ast
import os

from helpers import ROOT

PACKAGE = os.path.join(ROOT, "arr_coc")
# Bottom to top; readers and network are side by side: neither imports the other.
RANK = {"schema": 0, "process": 1, "readers": 2, "network": 2, "pipeline": 3, "publish": 4}


def layer_of(module: str) -> str:
    """'arr_coc.network.retry' -> 'network'; 'arr_coc.schema' -> 'schema'."""
    return module.split(".")[1]


def modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py") and name != "__init__.py":
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path[: -len(".py")], ROOT).replace(os.sep, ".")
                yield path, dotted


def imported_modules(path: str, dotted: str) -> set:
    """Every arr_coc module this file imports, relative imports resolved."""
    package = dotted.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("arr_coc.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if not base.startswith("arr_coc"):
                continue
            if base == "arr_coc" or base.count(".") == 1 and base.split(".")[1] in RANK and base.split(".")[1] != "schema":
                found |= {f"{base}.{alias.name}" for alias in node.names}  # from arr_coc.readers import vqav2
            else:
                found.add(base)
    return found


def test_every_module_sits_in_a_known_layer():
    assert {layer_of(dotted) for _, dotted in modules()} == set(RANK)


def test_imports_only_go_down_the_layers():
    upward = []
    for path, dotted in modules():
        mine = layer_of(dotted)
        for target in imported_modules(path, dotted):
            theirs = layer_of(target)
            if theirs != mine and RANK[theirs] >= RANK[mine]:
                upward.append(f"{dotted} imports {target}")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk above would pass vacuously if it resolved nothing: a planted upward import is found."""
    planted = tmp_path / "arr_coc" / "readers"
    planted.mkdir(parents=True)
    (planted / "bad.py").write_text("from ..pipeline.shard import ShardSpec\nfrom . import vqav2\n")
    found = imported_modules(str(planted / "bad.py"), "arr_coc.readers.bad")
    assert found == {"arr_coc.pipeline.shard", "arr_coc.readers.vqav2"}
