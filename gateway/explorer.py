"""GraphiQL, served by the gateway itself: its page and the pinned browser assets it loads.

The assets come from npm at install time (`gateway/graphiql/package.json` and its lock file, exact
versions) and are served from our own path, so the explorer works on a machine with no outside
network. Subscriptions in the page go through the reference `graphql-ws` client to our websocket,
with the headers pane's contents as its `connection_init` payload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

HERE = Path(__file__).parent / "graphiql"
MODULES = HERE / "node_modules"
DOCS = Path(__file__).parents[1] / "docs" / "graphql.md"
ASSET_PATH = "/graphiql"


@dataclass(frozen=True)
class Asset:
    """One file the page loads, and the license notice of the package it comes from."""

    package: str
    file: str
    license: str


ASSETS: dict[str, Asset] = {
    "react.js": Asset("react", "umd/react.production.min.js", "LICENSE"),
    "react-dom.js": Asset("react-dom", "umd/react-dom.production.min.js", "LICENSE"),
    "graphiql.js": Asset("graphiql", "graphiql.min.js", "LICENSE"),
    "graphiql.css": Asset("graphiql", "graphiql.min.css", "LICENSE"),
    "graphql-ws.js": Asset("graphql-ws", "umd/graphql-ws.min.js", "LICENSE.md"),
}
"""What the page may load, by the name it asks for: nothing else under node_modules is served."""

_MEDIA = {".js": "text/javascript", ".css": "text/css"}


def missing_assets() -> list[str]:
    """Assets not installed (`npm ci` in gateway/graphiql has not run)."""
    return [name for name, a in ASSETS.items() if not (MODULES / a.package / a.file).is_file()]


@cache
def example_tabs() -> list[dict[str, str]]:
    """One GraphiQL tab for each example block of docs/graphql.md (none where docs are absent)."""
    if not DOCS.is_file():
        return []
    blocks = re.findall(r"```graphql\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    return [{"query": block.strip() + "\n"} for block in blocks]


@cache
def page() -> str:
    """The GraphiQL page, with the example tabs written in."""
    html = (HERE / "index.html").read_text(encoding="utf-8")
    # No docs beside the code (an installed wheel): GraphiQL's own default tab.
    tabs = json.dumps(example_tabs()).replace("</", "<\\/") if example_tabs() else "undefined"
    return html.replace("__ASSETS__", ASSET_PATH).replace("__EXAMPLE_TABS__", tabs)


async def _asset(request: Request) -> Response:
    asset = ASSETS.get(request.path_params["name"])
    if asset is None:
        return PlainTextResponse("not found", status_code=404)
    path = MODULES / asset.package / asset.file
    if not path.is_file():
        return PlainTextResponse(
            "GraphiQL's assets are not installed: run `make venv` (npm ci in gateway/graphiql)",
            status_code=503,
        )
    return FileResponse(
        path,
        media_type=_MEDIA[path.suffix],
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def _licenses(_: Request) -> Response:
    notices = []
    for package in sorted({a.package for a in ASSETS.values()}):
        asset = next(a for a in ASSETS.values() if a.package == package)
        path = MODULES / package / asset.license
        text = path.read_text(encoding="utf-8") if path.is_file() else "(not installed)"
        notices.append(f"== {package} ==\n\n{text.strip()}\n")
    return PlainTextResponse("\n".join(notices))


def render(_: Request) -> Response:
    """The page itself (what GET /graphql answers a browser)."""
    return HTMLResponse(page())


routes = [
    Route(f"{ASSET_PATH}/licenses", _licenses),
    Route(f"{ASSET_PATH}/{{name}}", _asset),
]
"""The gateway mounts these beside /graphql."""
