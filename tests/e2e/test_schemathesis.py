"""Schemathesis against the OpenAPI document of a real service process (issue 9): generated requests for
every documented operation never produce a server error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_no_server_error(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "BOT_", "TWILIO"))}
    env.update(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/fo.db", HTTP_HOST="127.0.0.1", HTTP_PORT=str(port),
               BILLING_WEBHOOK_SECRET="schemathesis", LOG_LEVEL="WARNING")
    server = subprocess.Popen([sys.executable, str(ROOT / "main.py")], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run = subprocess.run(
            [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
             "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "10", "--request-timeout", "20", "--wait-for-schema", "60", "--seed", "1"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        log, _ = server.communicate(timeout=30)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
    assert server.returncode == 0, log[-3000:]
