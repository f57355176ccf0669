"""`sutazai doctor`: every server, stream and consumer checked, one actionable line per problem."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from runtime.bootstrap import stream_layout
from runtime.cli.base import CliError, Unavailable, app, console, read_settings, run
from runtime.doctor import OK, PROBLEM, Diagnosis, diagnose

_STYLE = {OK: "green", PROBLEM: "red"}


def _table(diagnosis: Diagnosis) -> Table:
    """A row a check, within 80 columns: the detail folds, the problems go under the table."""
    table = Table(title="SutazAI doctor")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for finding in diagnosis.findings:
        style = _STYLE.get(finding.status, "dim")
        table.add_row(
            escape(finding.check), f"[{style}]{finding.status}[/]", escape(finding.detail)
        )
    return table


@app.command()
def doctor() -> None:
    """Check every server and its version, the streams, consumers, DLQ, disk and clocks."""
    settings = read_settings()
    diagnosis = run(diagnose(settings, stream_layout(settings)))
    console.print(_table(diagnosis))
    if not diagnosis.answering:  # every check but the disk's needs a server
        raise Unavailable(
            "The platform does not answer: none of its servers does; run `sutazai up`."
        )
    problems = diagnosis.problems
    for problem in problems:
        console.print(f"[red]✗[/] {escape(problem)}", highlight=False)
    if problems:
        raise CliError(f"{len(problems)} problem(s) found: each is said above with what to do.")
    console.print("[green]Healthy[/]: every check passed.")
