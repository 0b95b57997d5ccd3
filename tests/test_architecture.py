"""The structure as the imports draw it: floors, one-way dependencies, rooms of a readable size.

Read from the code's own `import` statements (ast), so it cannot drift from
the code. README's "Layout" section draws the same picture in words.
"""
import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

ROOT = Path(__file__).resolve().parents[1]

# Each package of the application and the packages of ours it may import.
# Floors from the bottom: resilience, core, messaging, the apps, ecommerce.
ALLOWED: dict[str, set[str]] = {
    "resilience": set(),
    "core": {"resilience"},
    "messaging": {"core", "resilience"},
    "catalog": {"core", "resilience"},
    "payments": {"core", "resilience"},
    "outbox": {"core", "messaging", "resilience"},
    "deadletters": {"core", "messaging", "resilience"},
    "orders": {"catalog", "payments", "outbox", "deadletters", "core", "messaging", "resilience"},
    "checkout": {"catalog", "orders", "outbox", "core", "messaging", "resilience"},
    "ecommerce": {"celery_app", "catalog", "checkout", "orders", "payments", "outbox", "deadletters", "core", "messaging", "resilience"},
}
OURS = set(ALLOWED) | {"celery_app", "ops", "bench", "tests"}
# Not application code: tests, benchmarks, drills and scripts have their own rules.
APPLICATION = sorted(ALLOWED)
MAX_MODULE_LINES = 400
MAX_PACKAGE_SHARE = 0.25


def modules(package: str) -> Iterator[Path]:
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def imports_of(path: Path) -> set[str]:
    """The top-level packages of ours that a module imports, at any depth of the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & OURS


def lines_of(path: Path) -> int:
    return len(path.read_text().splitlines())


@pytest.mark.unit
def test_every_application_package_is_listed_with_its_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "ops", "bench"}
    assert packages == set(ALLOWED)


@pytest.mark.unit
@pytest.mark.parametrize("package", APPLICATION)
def test_package_imports_only_what_its_floor_allows(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(package)
        for name in imports_of(path) - ALLOWED[package] - {package}
    }
    assert not wrong


@pytest.mark.unit
def test_dependencies_between_packages_have_no_circle() -> None:
    # The allowed graph itself must be acyclic, or the test above could allow a circle.
    visiting, done = set(), set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in visiting, f"circle: {' -> '.join(path + (package,))}"
        if package in done:
            return
        visiting.add(package)
        for dependency in ALLOWED.get(package, ()):
            visit(dependency, path + (package,))
        visiting.discard(package)
        done.add(package)

    for package in ALLOWED:
        visit(package, ())


@pytest.mark.unit
@pytest.mark.parametrize("package", APPLICATION)
def test_no_module_is_longer_than_the_limit(package: str) -> None:
    long = {str(path.relative_to(ROOT)): lines_of(path) for path in modules(package) if lines_of(path) > MAX_MODULE_LINES}
    assert not long


@pytest.mark.unit
def test_no_package_holds_more_than_a_quarter_of_the_application_code() -> None:
    # Counted with and without migrations: neither way may one package dominate.
    for with_migrations in (False, True):
        sizes = {
            package: sum(
                lines_of(path)
                for path in sorted((ROOT / package).rglob("*.py"))
                if with_migrations or "migrations" not in path.parts
            )
            for package in APPLICATION
        }
        total = sum(sizes.values()) + lines_of(ROOT / "celery_app.py")
        big = {package: f"{size / total:.0%}" for package, size in sizes.items() if size > MAX_PACKAGE_SHARE * total}
        assert not big, f"with_migrations={with_migrations}"


@pytest.mark.unit
@pytest.mark.parametrize("package", APPLICATION)
def test_package_opens_with_a_docstring_saying_what_it_may_import(package: str) -> None:
    docstring = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert docstring and "import" in docstring.lower()
