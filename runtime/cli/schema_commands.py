"""`sutazai schemas …`: the published contract."""

from __future__ import annotations

from typing import Annotated

import typer

from runtime.cli.base import (
    CliError,
    console,
    schemas_app,
)
from schemas import published


@schemas_app.command("export")
def schemas_export(
    check: Annotated[
        bool, typer.Option(help="Change nothing; fail if the files differ from the code.")
    ] = False,
) -> None:
    """Write JSON Schemas, the AsyncAPI document and docs/events.md from the models."""
    if check:
        wrong = published.differences()
        for path in wrong:
            console.print(f"[red]out of date:[/] {path}")
        if wrong:
            raise CliError("Out of date: run `sutazai schemas export` and commit the result.")
        console.print("The published contract matches the code.")
        return
    changed = published.export()
    for path in changed:
        console.print(f"wrote {path}")
    console.print(f"{len(changed)} file(s) changed.")
