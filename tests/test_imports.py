"""The package's import graph, read from the source (every import statement, also inside functions).

Rules: ``tfresp.data`` imports no model, export, task or builder code; no mechanism imports the builder; the run
internals under ``tfresp/run/`` (but the builder and the finished-run data check) import only each other and the
base (errors, config, concerns), so any mechanism may use them; no import cycle among ``tfresp.data.*`` nor among
``tfresp.models.*``. ``python tests/test_imports.py`` prints every cycle in the package.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "tfresp"
DATA_MUST_NOT_IMPORT = ("tfresp.models", "tfresp.export", "tfresp.tasks", "tfresp.run.builder")


def module_files(root: Path = PACKAGE) -> Dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(source: str, module: str, is_package: bool, modules) -> Set[str]:
    """tfresp modules imported anywhere in ``source`` (top level, functions, classes, try blocks)."""
    package = module if is_package else module.rpartition(".")[0]

    def known(name):  # the longest prefix that is a module: `tfresp.data.text.read_vocab` -> tfresp.data.text
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(known(a.name) for a in node.names if a.name.split(".")[0] == "tfresp")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "tfresp":
                continue
            for alias in node.names:  # `from tfresp.models import peft` imports the module tfresp.models.peft
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else known(base))
    found.discard(None)
    found.discard(module)
    return found


def import_graph(root: Path = PACKAGE) -> Dict[str, Set[str]]:
    modules = module_files(root)
    return {m: imports_of(p.read_text(encoding="utf-8"), m, p.name == "__init__.py", modules)
            for m, p in modules.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted; a self-import is none."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def subgraph(graph, prefix: str):
    inside = lambda m: m == prefix or m.startswith(prefix + ".")  # noqa: E731
    return {m: {t for t in deps if inside(t)} for m, deps in graph.items() if inside(m)}


def test_the_walker_sees_imports_inside_functions_and_the_finder_sees_cycles():
    modules = {"tfresp", "tfresp.a", "tfresp.a.x", "tfresp.b"}
    src = "import os\ndef f():\n    from tfresp.b import thing\n    from . import x\n    import tfresp.a.x.y\n"
    assert imports_of(src, "tfresp.a", True, modules) == {"tfresp.b", "tfresp.a.x"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_data_layer_imports_no_model_export_task_or_builder_code():
    graph = import_graph()
    bad = sorted((m, t) for m, deps in graph.items() if m.startswith("tfresp.data")
                 for t in deps if t.startswith(DATA_MUST_NOT_IMPORT))
    assert len([m for m in graph if m.startswith("tfresp.data.")]) >= 10  # the walk found the data modules
    assert bad == []


def test_no_import_cycle_among_data_nor_among_models():
    graph = import_graph()
    assert cycles(subgraph(graph, "tfresp.data")) == []
    assert cycles(subgraph(graph, "tfresp.models")) == []


MECHANISMS = ("tfresp.privacy", "tfresp.fairness", "tfresp.robustness", "tfresp.compression", "tfresp.explain",
              "tfresp.evaluation", "tfresp.federated", "tfresp.export", "tfresp.monitoring", "tfresp.tasks")
#: rebuilds a client's run context itself; to use tfresp.run.context.compose (then drop it from here)
BUILDER_IMPORT_ALLOWED = {"tfresp.federated.app"}


def test_no_mechanism_imports_the_builder():
    graph = import_graph()
    bad = sorted((m, t) for m, deps in graph.items() if m.startswith(MECHANISMS) and m not in BUILDER_IMPORT_ALLOWED
                 for t in deps if t == "tfresp.run.builder")
    assert len([m for m in graph if m.startswith(MECHANISMS)]) >= 40  # the walk found the mechanism modules
    assert bad == []


RUN_INTERNALS = ("tfresp.run.context", "tfresp.run.checkpointing", "tfresp.run.rundir", "tfresp.run.io",
                 "tfresp.run.distribute", "tfresp.run.training")
BASE = ("tfresp.errors", "tfresp.concerns", "tfresp.config", "tfresp._configbase")
MOVED = ("builder", "context", "checkpointing", "rundir", "io", "distribute", "training", "run_data")


def test_run_internals_sit_below_the_mechanisms_and_out_of_the_top_level():
    graph = import_graph()
    assert set(RUN_INTERNALS) <= set(graph)
    bad = sorted((m, t) for m in RUN_INTERNALS for t in graph[m] if t not in RUN_INTERNALS + BASE)
    assert bad == []
    assert [m for m in MOVED if (PACKAGE / f"{m}.py").exists()] == []  # internals live in tfresp/run only


def test_no_import_cycle_in_the_package():
    assert cycles(import_graph()) == []  # function-level imports included


if __name__ == "__main__":
    for comp in cycles(import_graph()):
        g = import_graph()
        print(" <-> ".join(comp), "|", "; ".join(f"{m} -> {sorted(t for t in g[m] if t in comp)}" for m in comp))
