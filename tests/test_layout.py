"""The shape the code keeps: dependencies that point one way (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent / "service"
# service/<domain>/ folders: what the generic modules must not import.
DOMAINS = sorted(
    path.name for path in SERVICE.iterdir() if path.is_dir() and (path / "__init__.py").exists()
)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SERVICE.parent).with_suffix("").parts)


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def route_modules() -> dict[str, Path]:
    """Modules that define a blueprint at their top level."""
    found = {}
    for path in SERVICE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id.endswith("blueprint") for t in targets):
                found[module_name(path)] = path
    return found


def test_the_route_modules_are_found() -> None:
    """So that the next test cannot pass by finding none."""
    assert {"service.todos.pages", "service.exports.routes", "service.articles.comments"} <= set(
        route_modules()
    )


def test_no_route_module_imports_another() -> None:
    routes = route_modules()
    for name, path in routes.items():
        others = imported_modules(path) & (set(routes) - {name})
        assert not others, f"{name} imports the route module(s) {sorted(others)}"


def test_the_queue_imports_no_domain() -> None:
    domains = {f"service.{domain}" for domain in DOMAINS}
    imports = imported_modules(SERVICE / "queue.py")
    assert not {
        name for name in imports if any(name == d or name.startswith(d + ".") for d in domains)
    }
