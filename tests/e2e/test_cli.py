"""The real process, as an administrator starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_", "BOT_"))}
    env.update({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fresh/frontoffice.db", "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_first_run_answers_health_and_stops_cleanly_on_sigterm(tmp_path):
    """Behaviour only; the time to the first /health is measured by bench/startup.py."""
    port = free_port()
    env = clean_env(tmp_path, HTTP_PORT=str(port), HTTP_HOST="127.0.0.1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        while time.monotonic() - started < 5 and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    body = response.read()
                    break
            except OSError:
                time.sleep(0.1)
        assert body == b'{"status": "ok"}', f"no /health (exit {proc.poll()})"
        assert (tmp_path / "fresh" / "frontoffice.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/health" in output
    assert "demo data seeded" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL: driver 'mysql' is not supported"),
        ({"DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}, "database unreachable"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "redis unreachable"),
        ({"CONFIG_FILE": "/no/such/site.yaml"}, "/no/such/site.yaml: file not found"),
    ],
)
def test_bad_start_up_is_one_clear_line(tmp_path, extra, message):
    result = run(["serve"], clean_env(tmp_path, **extra), tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_demo_and_db_upgrade_commands(tmp_path):
    env = clean_env(tmp_path, SEED_DEMO="false")
    upgrade = run(["db", "upgrade"], env, tmp_path)
    assert upgrade.returncode == 0 and "-> 0001" in upgrade.stdout, upgrade.stderr
    first = run(["demo"], env, tmp_path)
    assert first.returncode == 0 and "20 customers added" in first.stdout, first.stderr
    again = run(["demo"], env, tmp_path)
    assert "0 customers added" in again.stdout


def test_help_everywhere(tmp_path):
    for args in (["--help"], ["serve", "--help"], ["db", "--help"], ["worker", "--help"]):
        result = run(args, clean_env(tmp_path), tmp_path)
        assert result.returncode == 0 and "usage:" in result.stdout
