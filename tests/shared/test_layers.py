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
