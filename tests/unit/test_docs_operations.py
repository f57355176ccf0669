"""Every example operation in docs/graphql.md is valid against the schema.

They open as GraphiQL's tabs (gateway/explorer.py), so a stale example is a broken tab.
"""

from __future__ import annotations

import pytest
from graphql import build_schema, parse, validate

from gateway.explorer import example_tabs
from gateway.schema import sdl

TABS = example_tabs()


def test_the_docs_have_example_operations() -> None:
    assert len(TABS) >= 5


@pytest.mark.parametrize("tab", TABS, ids=[t["query"].split("{")[0].strip() for t in TABS])
def test_an_example_operation_validates(tab: dict[str, str]) -> None:
    errors = validate(build_schema(sdl()), parse(tab["query"]))
    assert not errors, [e.message for e in errors]
