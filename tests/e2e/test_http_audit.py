"""GraphQL over HTTP to the letter: the reference audit (npm `graphql-http`) on the gateway."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from tests.e2e.conftest import Gateway

CLIENTS = Path(__file__).parents[1] / "clients"


async def test_the_gateway_passes_the_graphql_over_http_audit_with_no_warning(
    gateway: Gateway,
) -> None:
    node = shutil.which("node")
    assert node, "Node.js is missing: `make test` installs it"
    audit = await asyncio.create_subprocess_exec(
        node,
        str(CLIENTS / "audit_http.mjs"),
        f"{gateway.url}/graphql",
        cwd=CLIENTS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(audit.communicate(), timeout=120)
    assert audit.returncode == 0, err.decode()
    results = [json.loads(line) for line in out.decode().splitlines()]
    assert len(results) > 30, results  # the audit ran in full
    failed = [f"{r['status']}: {r['name']} ({r['reason']})" for r in results if r["status"] != "ok"]
    assert not failed, "\n".join(failed)
