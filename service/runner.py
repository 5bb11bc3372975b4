"""Running the web server and the workers, with a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from config import BusinessConfig, Settings
from service.container import Services, build_services, seed_first_run
from service.http import create_app
from service.wiring import build_workers, mount_adapters, warm_up
from service.workers import WorkerGroup

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS = 15.0


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
            pass


def banner(services: Services, host: str, port: int, adapter_lines: list[str], workers: WorkerGroup | None) -> str:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown_host}:{port}"
    s = services.settings
    lines = [
        f"Front office is running on {base}",
        f"  health   {base}/health    readiness {base}/ready    metrics {base}/metrics",
        f"  database {services.engine.url.render_as_string()}",
        f"  redis    {s.redis_url_safe or 'in-process (REDIS_URL not set)'}",
        *adapter_lines,
    ]
    if workers is not None:
        names = ", ".join(w.name for w in workers.workers) or "none"
        lines.append(f"  workers  {names}")
    else:
        lines.append("  workers  not in this process (run `python main.py worker`)")
    lines.append("Stop with Ctrl+C (SIGTERM finishes in-flight requests first).")
    return "\n".join(lines)


async def serve(settings: Settings, config: BusinessConfig, *, host: str, port: int, with_workers: bool) -> int:
    services = await build_services(settings, config, defer_demo_seed=True)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    app = create_app(services)
    adapter_lines = await mount_adapters(app, services)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_SECONDS, access_log=None)
    await runner.setup()
    workers = WorkerGroup(build_workers(services)) if with_workers else None
    stopping = 0.0
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", host, port, exc.strerror or exc)
            return 1
        # The first run's demo data goes in once we listen (liveness does not need it; /ready says
        # "seeding" meanwhile), then the workers start, so they never see a half-seeded database.
        seeding = asyncio.create_task(_seed_then_start(services, workers), name="first-run-seed")
        services.extras["first_run_seed"] = seeding
        warm = asyncio.create_task(warm_up(services), name="warm-up")
        print(banner(services, host, port, adapter_lines, workers), flush=True)
        await stop.wait()
        stopping = time.monotonic()
        log.info("stopping: no new connections, finishing in-flight requests")
        warm.cancel()
        # A seed in progress is finished (a second or two), not cut: it is one transaction either way,
        # but stopping half-way would only make the next start do it again.
        await asyncio.gather(seeding, return_exceptions=True)
    finally:
        # cleanup() stops listening, waits for in-flight handlers, then runs the app's cleanup hooks.
        await runner.cleanup()
        if workers is not None:
            await workers.shutdown()
        await services.close()
    log.info("stopped in %.1fs", time.monotonic() - stopping if stopping else 0.0)
    return 0


async def _seed_then_start(services: Services, workers: WorkerGroup | None) -> None:
    try:
        await seed_first_run(services)
    except Exception:
        log.exception("first run: demo data could not be seeded (python main.py demo adds it later)")
    if workers is not None:
        workers.start()


async def run_workers(settings: Settings, config: BusinessConfig) -> int:
    services = await build_services(settings, config)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    group = WorkerGroup(build_workers(services))
    try:
        group.start()
        print(f"workers running: {', '.join(w.name for w in group.workers) or 'none'}", flush=True)
        await stop.wait()
    finally:
        await group.shutdown()
        await services.close()
    return 0
