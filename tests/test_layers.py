"""The house rules import-linter does not check: no module imports another module's private name."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "resizelab"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_module_imports_a_private_name_of_another():
    offences = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 40  # the walk found the package
    for path in files:
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(module, path, node)
                if not source.startswith("resizelab"):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offences.append(f"{path.relative_to(SRC)}:{node.lineno} imports {alias.name} from {source}")
                    if source.split(".")[-1].startswith("_") and source != module:
                        offences.append(f"{path.relative_to(SRC)}:{node.lineno} imports the private module {source}")
    assert not offences, "\n".join(offences)


def test_the_private_name_check_sees_an_offence(tmp_path):
    """The walk above resolves relative imports: an import of a private name it must catch, it catches."""
    path = SRC / "sweeps" / "claim.py"
    node = ast.parse("from ..core.config import _hidden").body[0]
    assert _resolve(_module_name(path), path, node) == "resizelab.core.config"
    node = ast.parse("from . import plan").body[0]
    assert _resolve(_module_name(path), path, node) == "resizelab.sweeps"
