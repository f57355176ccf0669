"""The inner layers import nothing from the outer ones (docs/architecture.md §1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {
    "domain",
    "schemas",
    "eventstore",
    "commands",
    "projections",
    "handlers",
    "gateway",
    "runtime",
}
MAY_IMPORT = {
    "domain": {"domain"},
    "schemas": {"domain", "schemas"},
    # The read side folds with its own `projections/fold.py`, never the bus's loading.
    "projections": {"domain", "schemas", "eventstore", "projections"},
}
EXCEPTIONS = {"schemas/published.py": {"gateway"}}
"""The export of the published contract writes the gateway's SDL too: it imports the gateway's
schema inside that one function, at export time, never when the schemas are imported."""


def imported_packages(path: Path) -> set[str]:
    """The top-level packages of ours that a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & OURS


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_layer_imports_only_what_lies_inside_it(package: str) -> None:
    strays = {
        module: sorted(
            imported_packages(path) - MAY_IMPORT[package] - EXCEPTIONS.get(module, set())
        )
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in [str(path.relative_to(ROOT))]
    }
    assert {module: names for module, names in strays.items() if names} == {}
