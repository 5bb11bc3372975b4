"""Benchmark: time from `python main.py` on a fresh data folder to the first answer of GET /health.

    python -m bench.startup [--runs 3]

Each run starts the service as an administrator would on a fresh clone (no .env, SQLite in a new empty
folder, so the schema is created and the demo data seeded), polls /health every 20 ms, then stops it with
SIGTERM and checks the exit code. Target: /health answers within 5 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_run() -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DATABASE_URL", "REDIS_URL", "BOT_TOKEN", "TEST_", "PUBLIC_BASE_URL"))}
        env.update(HTTP_HOST="127.0.0.1", HTTP_PORT=str(port), LOG_LEVEL="WARNING")
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py")], env=env, cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.02)
            elapsed = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    return elapsed, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times, codes = [], []
    for _ in range(args.runs):
        elapsed, code = one_run()
        times.append(elapsed)
        codes.append(code)
        print(f"  /health after {elapsed:.2f}s, exit code {code}", flush=True)
    worst = max(times)
    print(f"startup: median {statistics.median(times):.2f}s, worst {worst:.2f}s over {args.runs} fresh starts; "
          f"target 5 s -> {'OK' if worst <= 5 and set(codes) == {0} else 'NOT MET'}")


if __name__ == "__main__":
    main()
