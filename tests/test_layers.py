"""One-way layers: no module imports (at module level or inside a function) from a layer above its
own, and no import cycles between modules. Read from the source with ``ast``, so lazy imports count.

    core (geometry, native loader, config schema, sidecar schema, op spec, atomic writes) -> models (incl. RE)
    -> data -> eval (+ viz) -> train -> compress -> export -> runtime (+ the export parity check)
    -> quantize -> bench -> app (pipeline, demo, CLI)
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "clean_deploy"

#: module prefix -> layer (the longest matching prefix wins)
LAYERS = {
    "clean_deploy": 0, "clean_deploy.atomic": 0, "clean_deploy.config": 0, "clean_deploy.kitti": 0, "clean_deploy.sidecar": 0,
    "clean_deploy.geometry": 0, "clean_deploy.native": 0, "clean_deploy.stages": 0, "clean_deploy.op_spec": 0,
    "clean_deploy.models": 1,
    "clean_deploy.data": 2,
    "clean_deploy.eval": 3, "clean_deploy.viz": 3,
    "clean_deploy.train": 4,
    "clean_deploy.compress": 5,
    "clean_deploy.export": 6,
    "clean_deploy.runtime": 7,
    "clean_deploy.quantize": 8,
    "clean_deploy.bench": 9,
    "clean_deploy.pipeline": 10, "clean_deploy.demo": 10, "clean_deploy.cli": 10, "clean_deploy.__main__": 10,
}
NAMES = ["core", "models", "data", "eval", "train", "compress", "export", "runtime", "quantize", "bench", "app"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of the longest matching prefix; the package itself matches only exactly, so a new
    top-level module has no layer until it is given one."""
    best = max((k for k in LAYERS if module == k or (k != "clean_deploy" and module.startswith(k + "."))), key=len)
    return LAYERS[best]


def imports_of(module: str, tree: ast.AST) -> list[tuple[str, int]]:
    """(imported module, line) of every import in the tree, resolved to modules of the package
    (``from pkg import name`` is ``pkg.name`` when that is a module)."""
    out = []
    is_pkg = MODULES[module].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "clean_deploy"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "clean_deploy":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub if sub in MODULES else target, node.lineno))
    return out


GRAPH = {m: imports_of(m, ast.parse(p.read_text(), str(p))) for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    assert len(MODULES) > 50
    for m in MODULES:
        layer_of(m)  # raises ValueError (max of nothing) for a module outside the map


def test_no_module_imports_from_a_layer_above_its_own():
    bad = [f"{m} ({NAMES[layer_of(m)]}) imports {t} ({NAMES[layer_of(t)]}) at line {line}"
           for m, edges in GRAPH.items() for t, line in edges if layer_of(t) > layer_of(m)]
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components (more than one module) of the import graph, ignoring a
    package's imports of its own submodules (``__init__`` re-exports)."""
    graph = {m: {t for t, _ in edges if t in MODULES and not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, edges in GRAPH.items()}
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycles():
    assert not _cycles()


def test_the_checks_catch_an_upward_import_and_a_cycle(monkeypatch):
    edges = dict(GRAPH)
    edges["clean_deploy.models.postprocess"] = GRAPH["clean_deploy.models.postprocess"] + [("clean_deploy.compress.distill.cakd", 1)]
    edges["clean_deploy.sidecar"] = GRAPH["clean_deploy.sidecar"] + [("clean_deploy.atomic", 1)]
    edges["clean_deploy.atomic"] = GRAPH["clean_deploy.atomic"] + [("clean_deploy.sidecar", 1)]
    monkeypatch.setattr(__import__(__name__), "GRAPH", edges)
    with pytest.raises(AssertionError, match="models.postprocess"):
        test_no_module_imports_from_a_layer_above_its_own()
    assert ["clean_deploy.atomic", "clean_deploy.sidecar"] in _cycles()
