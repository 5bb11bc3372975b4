import asyncio

from handlers.notifications.auto_close import AutoCloser
from handlers.notifications.periodic import PeriodicWorker
from handlers.notifications.sla_watcher import SlaWatcher


class Flaky(PeriodicWorker):
    what = "flaky check"
    interval = 0.01

    def __init__(self):
        self.passes = 0
        self.third = asyncio.Event()

    async def run_once(self) -> int:
        self.passes += 1
        if self.passes == 3:
            self.third.set()
        if self.passes == 1:
            raise ConnectionError("database down")
        return 0


async def test_a_failed_pass_is_logged_and_the_loop_goes_on_until_stopped(caplog):
    worker, stop = Flaky(), asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.third.wait(), 2)  # the failed first pass did not stop the loop
    stop.set()
    await asyncio.wait_for(task, 1)
    assert "flaky check failed" in caplog.text


def test_ticket_workers_share_the_loop():
    assert issubclass(AutoCloser, PeriodicWorker) and issubclass(SlaWatcher, PeriodicWorker)
