"""Vigil's packages import each other without cycles, so each layer can be understood (and tested) on its
own: the shared telemetry-frame helpers live in ``vigil.frames``, which depends only on the model."""

import ast
from pathlib import Path

import networkx as nx

SRC = Path(__file__).resolve().parents[1] / "src" / "vigil"
# interfaces that are one layer in two packages (the console is served by the API app); nothing else
ALLOWED = [{"api", "web"}]


def package_graph(root: Path) -> nx.DiGraph:
    g = nx.DiGraph()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        pkg = rel[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vigil."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("vigil.")]
            for name in names:
                dep = name.split(".")[1]
                if dep != pkg:
                    g.add_edge(pkg, dep)
    return g


def cycles(g: nx.DiGraph) -> list[set[str]]:
    return [c for c in nx.strongly_connected_components(g) if len(c) > 1 and c not in ALLOWED]


def test_no_import_cycles_between_packages():
    assert cycles(package_graph(SRC)) == []


def test_the_check_finds_a_planted_cycle(tmp_path):
    (tmp_path / "engine").mkdir()
    (tmp_path / "sources").mkdir()
    (tmp_path / "engine" / "a.py").write_text("from vigil.sources.b import x\n")
    (tmp_path / "sources" / "b.py").write_text("from vigil.engine.a import y\n")
    assert cycles(package_graph(tmp_path)) == [{"engine", "sources"}]


def test_frames_depend_only_on_the_model():
    g = package_graph(SRC)
    assert set(g.successors("frames")) <= {"model"}
