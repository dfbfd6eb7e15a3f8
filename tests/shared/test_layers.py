"""Imports point down: theory -> tracks -> analysis and plotting -> cli (issue 22).

Read from the source (every ``import`` and ``from ... import``, at top level or inside a
function), so a late import cannot hide an upward one.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "recall_theory"


def _imports(path: Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def _modules(under: str):
  for path in sorted((PACKAGE / under).rglob("*.py")):
    yield path.relative_to(PACKAGE.parent).as_posix(), _imports(path)


def test_the_library_never_imports_the_command_line():
  offenders = [(name, sorted(i for i in imports if i.startswith("recall_theory.cli")))
               for name, imports in _modules(".")
               if not name.startswith(("recall_theory/cli/", "recall_theory/__main__"))]
  assert [o for o in offenders if o[1]] == []


def _module_graph() -> dict[str, set[str]]:
  graph = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    name = ".".join(p for p in rel.parts if p != "__init__")
    graph[name] = {i for i in _imports(path) if i.startswith("recall_theory")}
  modules = set(graph)
  # "from recall_theory.x import y" names module recall_theory.x.y only when that module exists
  return {m: {i for i in deps if i in modules and i != m} for m, deps in graph.items()}


def test_no_import_cycles_between_modules():
  graph = _module_graph()
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = "open"
    for dep in sorted(graph.get(node, ())):
      if state.get(dep) == "open":
        cycles.append(stack[stack.index(dep):] + [dep])
      elif dep not in state:
        visit(dep, stack + [dep])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  # a package's __init__ importing its own submodules is not a cycle worth naming
  real = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".")
                                       for a, b in zip(c, c[1:]))]
  assert real == []
