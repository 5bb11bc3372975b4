"""`python main.py call`: a call played in the terminal, in-process and against a running server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
# Each test starts real processes (a server, a call); on a busy machine that takes minutes, not seconds.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the module: the topic model is trained once, not per test."""
    return tmp_path_factory.mktemp("ivr-data")


@pytest.fixture
def data_dir(shared_data: Path) -> Path:
    return shared_data


def _env(tmp_path: Path, data: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_", "BOT_", "TWILIO_", "PUBLIC_BASE_URL"))}
    env.update({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fo.db",
                "DATA_DIR": str(data or tmp_path / "data"), "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def _call(args: list[str], keys: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "call", *args], input=keys, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def test_known_caller_hears_the_balance_in_process(tmp_path: Path, data_dir: Path) -> None:
    done = _call(["--from", "+79161234567"], "1\n", _env(tmp_path, data_dir), tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Здравствуйте, Иван Иванович" in out
    assert "Баланс лицевого счёта два ноль ноль ноль ноль один" in out and "рубл" in out
    assert out.rstrip().endswith("(call ended)")  # Ctrl+D (end of input) hangs up


def test_unknown_caller_pin_then_operator_no_answer(tmp_path: Path, data_dir: Path) -> None:
    keys = "200001#\n0001#\n0\nn\n"
    done = _call(["--from", "+79990001122"], keys, _env(tmp_path, data_dir), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Мы не узнали ваш номер" in done.stdout and "Спасибо, Иван Иванович" in done.stdout
    assert "(dialing +74950000001" in done.stdout
    assert "обратный звонок" in done.stdout


def test_bad_number_is_refused(tmp_path: Path) -> None:
    done = _call(["--from", "not-a-phone"], "", _env(tmp_path), tmp_path)
    assert done.returncode == 2 and "not a phone number" in done.stderr


def test_against_a_running_server_with_signatures(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    env = _env(tmp_path, data_dir, HTTP_PORT=str(port), HTTP_HOST="127.0.0.1", TWILIO_AUTH_TOKEN="e2e-token",
               PUBLIC_BASE_URL="https://public.example")
    # Output to a file: an unread pipe would block a chatty server once its buffer fills.
    server_log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "serve", "--no-workers"], env=env,
                              cwd=tmp_path, stdout=server_log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180  # a loaded CI machine needs its time (model loading, seeding)
        while True:
            try:
                # Ready, not just alive: the first run's demo data goes in after the listener is up.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        done = _call(["--from", "+79161234567", "--url", f"http://127.0.0.1:{port}"], "1\n", env, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "рубл" in done.stdout
        wrong = _call(["--from", "+79161234567", "--url", f"http://127.0.0.1:{port}"], "1\n",
                      {**env, "TWILIO_AUTH_TOKEN": "wrong"}, tmp_path)
        assert wrong.returncode == 1 and "HTTP 403" in wrong.stdout
    finally:
        server.terminate()
        server.wait(30)
        server_log.close()
