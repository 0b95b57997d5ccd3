"""Dependencies run one way: checkout and orders both use the catalog, and orders never imports checkout."""
import ast
from pathlib import Path

import pytest

from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

ROOT = Path(__file__).resolve().parents[2]


def imported_apps(app: str) -> set[str]:
    apps = set()
    for path in (ROOT / app).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                apps.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                apps.update(alias.name.split(".")[0] for alias in node.names)
    return apps


@pytest.mark.unit
@pytest.mark.parametrize(
    ("app", "never"),
    [
        ("orders", "checkout"),  # checkout creates orders; orders give stock back through the catalog
        ("catalog", "checkout"),
        ("catalog", "orders"),
    ],
)
def test_app_does_not_import(app: str, never: str) -> None:
    assert never not in imported_apps(app)
