"""Compare an OpenAPI document with the routes a CherryPy (MethodDispatcher) application serves."""

from __future__ import annotations

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def served_routes(root) -> set[tuple[str, str]]:
    """(method, path) of every handler under ``root``; a path names the resource only (what the
    dispatcher reaches by attribute), its path parameters left out."""
    routes: set[tuple[str, str]] = set()

    def walk(resource, path: str) -> None:
        for method in HTTP_METHODS:
            if callable(getattr(resource, method, None)):
                routes.add((method, path or "/"))
        for name in dir(resource):
            if name.startswith("_") or name in HTTP_METHODS:
                continue
            child = getattr(resource, name)
            if getattr(child, "exposed", False) and any(callable(getattr(child, m, None)) for m in HTTP_METHODS):
                walk(child, f"{path}/{name.replace('_json', '.json')}")

    walk(root, "")
    return routes


def documented_routes(document: dict) -> set[tuple[str, str]]:
    """(method, path) of every operation of ``document``, path parameters left out."""
    routes = set()
    for path, item in document["paths"].items():
        resource = "/" + "/".join(part for part in path.split("/") if part and not part.startswith("{"))
        for method in item:
            if method.upper() in HTTP_METHODS:
                routes.add((method.upper(), resource))
    return routes
