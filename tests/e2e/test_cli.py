"""The real process, as an administrator starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
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
    log_path = tmp_path / "service.log"
    started = time.monotonic()
    with log_path.open("w") as log:  # a file, not a pipe: nobody reads a pipe until the end, and a full one blocks
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py")], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        body = None
        while time.monotonic() - started < 120 and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    body = response.read()
                    break
            except OSError:
                time.sleep(0.1)
        assert body == b'{"status": "ok"}', f"no /health (exit {proc.poll()}):\n{log_path.read_text()[-3000:]}"
        assert (tmp_path / "fresh" / "frontoffice.db").exists()
        # The demo data goes in after the listener is up; /ready says so until it is there.
        ready = None
        while time.monotonic() - started < 120 and ready is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                    ready = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                assert json.loads(exc.read())["down"] == ["demo_data"]
                time.sleep(0.1)
            except OSError:
                time.sleep(0.1)
        assert ready is not None and ready["status"] == "ok", ready
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    output = log_path.read_text()
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
    for args in (["--help"], ["serve", "--help"], ["db", "--help"], ["worker", "--help"], ["train", "--help"],
                 ["evaluate", "--help"], ["chat", "--help"], ["call", "--help"], ["import", "--help"]):
        result = run(args, clean_env(tmp_path), tmp_path)
        assert result.returncode == 0 and "usage:" in result.stdout


def test_train_and_evaluate_commands(tmp_path):
    rows = ["text,label"]
    for i in range(30):
        rows += [f"мой баланс и долг номер {i},balance", f"нет интернета совсем вариант {i},no_connection",
                 f"what is the weather like {i},oos"]
    data = tmp_path / "data.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    env = clean_env(tmp_path, FRONTOFFICE_NO_EMBEDDINGS="1")
    trained = run(["train", "--data", str(data), "--out", str(tmp_path / "model.pkl")], env, tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "model.pkl").stat().st_size > 0
    evaluated = run(["evaluate", "--train", str(data), "--test", str(data), "--oos-label", "oos"], env, tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    import json

    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert {"accuracy", "in_scope_accuracy", "macro_f1", "oos_recall", "p50_ms", "p99_ms", "n_train", "n_test",
            "train_seconds"} <= set(metrics)
    assert metrics["n_test"] == 90
    broken = run(["evaluate", "--train", str(tmp_path / "missing.csv"), "--test", str(data)], env, tmp_path)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr


def test_serving_does_not_import_feature_cli_modules():
    """Start-up must not pay for aiogram etc. when the command does not need them."""
    from main import _feature_modules

    assert _feature_modules([]) == [] and _feature_modules(["serve", "--port", "1"]) == []
    assert _feature_modules(["chat", "--as-staff"]) == ["bot.terminal"]
    assert set(_feature_modules(["--help"])) == {"bot.terminal", "ivr.terminal", "service.cli_data"}
