"""A group of real front-office processes for scale-out, crash and outage tests (issue 9).

Web processes (`main.py serve --no-workers`) and worker processes (`main.py worker`) share one PostgreSQL
database and one Redis (with a private key prefix), and talk to a fake Bot API. Database and Redis traffic
can be routed through `TcpProxy`, which can cut connections to simulate an outage without stopping the
servers that other test runs share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "cluster-telegram-secret"
TWILIO_TOKEN = "cluster-twilio-token"
PUBLIC_BASE_URL = "https://frontoffice.example"


class TcpProxy:
    """Forwards a local port to a target; `cut()` drops every connection and refuses new ones until
    `restore()`, as a server outage or a network partition looks to the client (connection reset, then
    connection refused). The real server keeps running for everybody else."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.connections = 0  # accepted since start: shows the clients really went through the proxy
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._generation = 0  # bumped by every cut

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._writers.discard(writer)
            writer.close()
            return
        if generation != self._generation:
            # Accepted before a cut that happened while we were connecting upstream: it must not survive it.
            writer.transport.abort()
            up_writer.transport.abort()
            self._writers.discard(writer)
            return
        self.connections += 1
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        self._generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()  # refuse new connections from now on
        # Reset every open connection before waiting for the server: from Python 3.12 on, wait_closed()
        # waits for the connections too.
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()


@dataclass
class Node:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *self.args], env=self.env,
                                     cwd=self.log_path.parent, stdout=log, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no cleanup at all, as in a crash."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            self.proc.wait(10)  # type: ignore[union-attr]

    def stop(self, timeout: float = 120) -> int | None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            try:
                return self.proc.wait(timeout)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.proc.kill()  # type: ignore[union-attr]
                return None
        return self.proc.returncode if self.proc else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
                if self.port is None:
                    if "workers running" in self.log():
                        return
                else:
                    with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                        async with session.get(self.url + "/ready", timeout=aiohttp.ClientTimeout(total=2)) as r:
                            body = await r.json()
                            if r.status == 200 and body["checks"].get("topic_model", "ok") == "ok":
                                return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log()[-3000:]}")


@dataclass
class Cluster:
    workdir: Path
    database_url: str
    redis_url: str
    bot_api_base: str
    bot_token: str
    config_file: Path
    data_dir: Path
    nodes: list[Node] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: f"cl{uuid.uuid4().hex[:8]}:")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE_URL", "REDIS_"))}
        env.update(
            DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, REDIS_PREFIX=self.prefix,
            BOT_TOKEN=self.bot_token, TELEGRAM_API_SERVER=self.bot_api_base, PUBLIC_BASE_URL=PUBLIC_BASE_URL,
            TELEGRAM_WEBHOOK_SECRET=SECRET, TWILIO_AUTH_TOKEN=TWILIO_TOKEN, CONFIG_FILE=str(self.config_file),
            DATA_DIR=str(self.data_dir), SEED_DEMO="false", LOG_LEVEL="INFO",
        )
        return env

    def add_web(self) -> Node:
        port = free_port()
        node = Node(f"web{len(self.nodes)}", ["serve", "--no-workers", "--host", "127.0.0.1", "--port", str(port)],
                    self.env(), self.workdir / f"web{len(self.nodes)}-{port}.log", port=port)
        self.nodes.append(node)
        return node

    def add_worker(self) -> Node:
        node = Node(f"worker{len(self.nodes)}", ["worker"], self.env(), self.workdir / f"worker{len(self.nodes)}.log")
        self.nodes.append(node)
        return node

    @property
    def webs(self) -> list[Node]:
        return [n for n in self.nodes if n.port is not None]

    def run_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], env=self.env(), cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)

    def stop_all(self) -> dict[str, int | None]:
        return {node.name: node.stop() for node in self.nodes}

    async def seed_demo(self, admin_database_url: str | None = None) -> None:
        """`main.py demo`, then every employee gets a Telegram chat (as after /start <invite>), so alerts go
        to people. `admin_database_url` reaches the database directly when the cluster's own URL goes
        through a proxy."""
        from sqlalchemy import update

        from storage.db import create_engine
        from storage.models import Staff

        demo = await asyncio.to_thread(self.run_cli, "demo")
        if demo.returncode != 0:
            raise AssertionError(f"main.py demo failed: {demo.stderr[-2000:]}")
        engine = create_engine(admin_database_url or self.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(update(Staff).values(telegram_id=Staff.id + 900_000_000))
        finally:
            await engine.dispose()


class TelegramLikeDelivery:
    """Delivers updates the way Telegram does: to any live web process, again and again until one answers
    200; remembers what was acknowledged."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.acked: dict[int, dict[str, Any]] = {}
        self.attempts = 0
        self.rejections: list[int] = []
        self._turn = 0

    async def deliver(self, session: aiohttp.ClientSession, update: dict[str, Any], deadline: float) -> bool:
        body = json.dumps(update)
        delay = 0.2
        while time.monotonic() < deadline:
            webs = [n for n in self.cluster.webs if n.alive] or self.cluster.webs
            node = webs[self._turn % len(webs)]
            self._turn += 1
            self.attempts += 1
            try:
                async with session.post(node.url + "/telegram/webhook", data=body, timeout=aiohttp.ClientTimeout(total=30),
                                        headers={"Content-Type": "application/json",
                                                 "X-Telegram-Bot-Api-Secret-Token": SECRET}) as response:
                    await response.read()
                    if response.status == 200:
                        self.acked[update["update_id"]] = update
                        return True
                    self.rejections.append(response.status)
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
        return False


def cluster_config(path: Path, *, group_chat_base: int = -1001000000000) -> Path:
    """Departments with group chats (alerts always have somewhere to go) and no per-agent cap in the way."""
    from config.business import load_business_config

    config = load_business_config()
    departments = []
    for i, dept in enumerate(config.departments):
        departments.append({"code": dept.code, "name": {"ru": dept.name.ru, "en": dept.name.en},
                            "calendar": "round_the_clock", "telegram_chat_id": group_chat_base - i,
                            "max_open_per_agent": 100000})
    path.write_text(json.dumps({"departments": departments}), encoding="utf-8")  # JSON is YAML
    return path
