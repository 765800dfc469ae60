"""The interfaces (``api/``, ``web/``, ``mcp/``, ``cli/``) call the application services
(``vigil.services``), never the state store: no module under them imports ``vigil.store``, reaches the
store through the application or the runtime (``rt.state``, ``app.state``, ``a.state``, ``_rt(request).state``,
an alias of one, or the store handed to a function), or opens a database session. Starlette's own
``app.state`` bag (which holds the runtime) is the one ``.state`` the interfaces use. Telemetry, the
space's connectors and OTLP ingestion go through the services too (``rt.telemetry``, ``app.sources``,
``rt.ingest`` are refused alike).

The check parses the source with ``ast``; the last tests plant violations and see each one caught."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vigil"
INTERFACES = ("api", "web", "mcp", "cli")
#: names that hold the application or the server runtime in the interfaces
HOLDERS = {"app", "rt", "runtime", "a", "application", "_app", "backend"}
#: attributes that are a store, whatever holds them
STORES = {"_state", "store", "_store", "state_store"}
#: what the application or the runtime holds besides the state store that only the services use
BEHIND_SERVICES = {"telemetry", "_telemetry", "sources", "_sources", "ingest"}


def _receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _receiver_name(node.func)
    return None


def violations_in(path: Path, text: str | None = None) -> list[str]:
    tree = ast.parse(text if text is not None else path.read_text())
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    out: list[str] = []

    def bad(node: ast.AST, what: str) -> None:
        out.append(f"{path}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "vigil.store" or a.name.startswith("vigil.store."):
                    bad(node, f"imports {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            mod = node.module
            if mod == "vigil.store" or mod.startswith("vigil.store."):
                bad(node, f"imports from {mod}")
            elif mod == "vigil" and any(a.name == "store" for a in node.names):
                bad(node, "imports vigil.store")
            elif any(a.name == "StateStore" for a in node.names):
                bad(node, f"imports StateStore from {mod}")
        elif isinstance(node, ast.Attribute):
            parent = parents.get(node)
            if node.attr in STORES and not (isinstance(parent, ast.Call) and parent.func is node):
                bad(node, f"reaches a store: .{node.attr}")         # (a method named store() is not one)
            elif node.attr in BEHIND_SERVICES and _receiver_name(node.value) in HOLDERS:
                bad(node, f"reaches past the services: {ast.unparse(node)}")
            elif node.attr == "state" and _receiver_name(node.value) in HOLDERS or (
                    node.attr == "state" and isinstance(node.value, ast.Call)
                    and _receiver_name(node.value) in {"_rt", "_runtime", "_app"}):
                starlette_bag = isinstance(parent, ast.Attribute) and parent.attr in ("runtime", "sns_certs")
                if not starlette_bag:
                    bad(node, f"reaches the state store: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "session", "uow"):
            bad(node, f"opens a database session: {ast.unparse(node.func)}()")
    return out


def violations(root: Path) -> list[str]:
    out: list[str] = []
    for pkg in INTERFACES:
        for path in sorted((root / pkg).rglob("*.py")):
            out += violations_in(path)
    return out


def test_interfaces_call_services_never_the_store():
    assert violations(SRC) == []


def test_the_interfaces_exist_and_are_all_checked():
    for pkg in INTERFACES:
        assert list((SRC / pkg).rglob("*.py")), pkg


def test_the_check_finds_planted_violations(tmp_path):
    for pkg in INTERFACES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "api" / "imports.py").write_text(
        "import vigil.store.state\n"
        "from vigil.store.tables import TokenRow\n"
        "from vigil import store\n"
        "from vigil.somewhere import StateStore\n")
    (tmp_path / "web" / "calls.py").write_text(
        "def page(request, rt, a):\n"
        "    rt.state.get_space('shop')\n"                      # through the runtime
        "    _rt(request).state.audit('x', 'y')\n"              # through the runtime's accessor
        "    st = self.app.state\n"                             # an alias of the store
        "    helper(a.state, 'shop')\n"                         # the store handed to a function
        "    rt.respond.store.outbox()\n"                       # a service's store
        "    rt.services.ingest.pipeline.store('traces', 'shop', dec)\n"  # a method named store: allowed
        "    with rt.app.state_store.session() as s:\n"         # a session
        "        pass\n")
    (tmp_path / "mcp" / "past.py").write_text(
        "def tool(self, rt, a):\n"
        "    self.app.sources.topology('shop')\n"
        "    rt.telemetry.counts('shop')\n"
        "    rt.ingest.store('traces', 'shop', None)\n"
        "    return a.services.telemetry.counts('shop')\n")                # through the services: allowed
    (tmp_path / "mcp" / "clean.py").write_text(
        "def ok(request, hyps, rt):\n"
        "    rt = request.app.state.runtime\n"                  # Starlette's bag: allowed
        "    live = [h for h in hyps if h.state is not None]\n"  # a hypothesis's state: allowed
        "    return rt.services.investigations.get('shop', 'inv_1'), [h.state.value for h in live]\n")
    (tmp_path / "cli" / "clean.py").write_text("def main(a):\n    return a.services.spaces.list()\n")
    found = violations(tmp_path)
    assert len([v for v in found if "imports.py" in v]) == 4, found
    calls = [v for v in found if "calls.py" in v]
    for line in (2, 3, 4, 5, 6, 8):
        assert any(v.startswith(f"{tmp_path / 'web' / 'calls.py'}:{line}:") for v in calls), (line, calls)
    past = sorted(v.split(":")[1] for v in found if "past.py" in v)
    assert past == ["2", "3", "4"], found
    assert not [v for v in found if "clean.py" in v or "calls.py:7:" in v], found
