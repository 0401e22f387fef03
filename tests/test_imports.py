"""The import graph of ``tracekd.*`` has no cycle.

The graph is read from the source (AST), not from ``sys.modules``: every ``import tracekd...`` and
``from tracekd... import`` / relative import counts, at module level, inside functions and under
``TYPE_CHECKING`` alike, so a cycle hidden by a lazy import is still found.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the ``tracekd`` modules it imports (``from pkg import sub`` counts as ``pkg.sub``; a module of
    another package also imports that package's ``__init__``)."""
    modules = _modules(src)
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for a in node.names:
                    sub = f"{module}.{a.name}"
                    targets.add(sub if sub in modules else module)
        found = {t for t in targets if t in modules and t.startswith("tracekd")}
        for t in list(found):  # importing a.b.c from outside package a.b runs a.b's __init__ first
            parts = t.split(".")
            found.update(p for p in (".".join(parts[:i]) for i in range(2, len(parts)))
                         if p in modules and not name.startswith(p + "."))
        graph[name] = found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_cycle_in(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle through the component's first module (breadth-first back to it), first module repeated at the end."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def test_no_import_cycles():
    found = cycles(import_graph(SRC))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_checker_finds_a_cycle(tmp_path):
    pkg = tmp_path / "tracekd"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tracekd.a\nx = 1\n")
    (pkg / "d.py").write_text("from . import c\n")
    assert cycles(import_graph(tmp_path)) == [["tracekd.a", "tracekd.sub.b", "tracekd.c", "tracekd.a"]]
    (pkg / "c.py").write_text("x = 1\n")  # the cycle gone; then one through a package's __init__
    assert cycles(import_graph(tmp_path)) == []
    (pkg / "sub" / "__init__.py").write_text("from .b import f\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    pass\n")
    (pkg / "sub" / "e.py").write_text("")
    (pkg / "c.py").write_text("from .sub import e\n")
    (pkg / "sub" / "b.py").write_text("from ..c import x\n")
    assert cycles(import_graph(tmp_path)) == [["tracekd.c", "tracekd.sub", "tracekd.sub.b", "tracekd.c"]]


@pytest.mark.parametrize("module", ["tracekd.text", "tracekd.datasets.cotemp_rules"])
def test_neutral_modules_import_nothing_above_them(module):
    """The shared text and interval helpers sit at the bottom of the graph (only errors / records below)."""
    graph = import_graph(SRC)
    assert graph[module] <= {"tracekd.errors", "tracekd.records", "tracekd.text"}, graph[module]


#: the extras' libraries (pyproject optional-dependencies): the core must run without any of them
EXTRAS = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf", "bitsandbytes", "vllm", "ijson",
          "pyarrow", "rouge_score", "sacrebleu", "matplotlib", "openai", "fastapi", "uvicorn", "jinja2", "sqlalchemy",
          "multipart", "httpx", "pandas", "statsmodels", "pingouin", "krippendorff", "submitit")

_CORE_PROBE = """
import sys

class NoExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: an extra)", name=name)

sys.meta_path.insert(0, NoExtras())
import tracekd
from tracekd.cli import main

out = sys.argv[1]
steps = [
    ["ls"], ["ls", "babi"],
    ["synth", "babi", "--tasks", "qa1,qa2", "--n", "4", "--seed", "0", "--out", f"{out}/babi"],
    ["validate", "--dataset", "babi", f"{out}/babi"],
    ["build", "--dataset", "babi", "--data", f"{out}/babi", "--option", "tasks=qa1,qa2",
     "--arms", "vanilla,correct,incorrect", "--out", f"{out}/b", "--quiet"],
    ["score", f"{out}/b/correct/test.jsonl", "--examples", f"{out}/b/examples/test.jsonl",
     "--text-field", "completion.0.content", "--out", f"{out}/s"],
    ["analyze", f"{out}/s/judgements.jsonl", "--out", f"{out}/analysis.json"],
]
for args in steps:
    rc = main(args)
    assert rc == 0, (args, rc)
print("extras imported:", sorted(m for m in sys.modules if m.split(".")[0] in EXTRAS))
"""


def test_core_commands_run_without_the_extras(tmp_path):
    """``import tracekd`` and ls / synth / validate / build / score / analyze with every extra's library blocked."""
    probe = f"EXTRAS = {EXTRAS!r}\n" + _CORE_PROBE
    r = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("extras imported: []"), r.stdout[-2000:]
