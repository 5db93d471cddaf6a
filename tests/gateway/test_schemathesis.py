"""schemathesis against the bridge's own /openapi.json: no 5xx, responses conform to the document."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

# Operations whose job is to fail, hang or sleep (live streams never end): they would make "no 5xx"
# meaningless or the run slow.
EXCLUDED = ("Mirror_Fail", "Mirror_Tail", "Mirror_Slow", "Mirror_Topic", "Mirror_History", "Mirror_Scores")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_schemathesis(mesh, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    args = [
        str(cli), "run", f"{mesh.base_url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", "10",
        "--seed", "20240501",
        "--workers", "1",
        "--request-timeout", "5",
        "--phases", "examples,coverage,fuzzing",
        "--suppress-health-check", "all",
        "--report", "ndjson", "--report-dir", str(tmp_path),
    ]
    for op in EXCLUDED:
        args += ["--exclude-operation-id", op]
    log = tmp_path / "schemathesis.txt"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        try:
            await asyncio.wait_for(proc.wait(), timeout=150)
        finally:
            if proc.returncode is None:
                proc.kill()
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-6000:]
