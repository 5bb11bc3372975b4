"""Grouped ticket opening without a database: how openings are batched and how a batch's failures reach
each caller (handlers.tickets.group_open), and routing a batch from a staff snapshot
(handlers.tickets.routing_snapshot)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from config import load_business_config
from handlers.dto import ClientProfile, InvalidRequest
from handlers.tickets.common import Departments
from handlers.tickets.group_open import DuplicateMessage, FollowUp, Opening, TicketOpener
from handlers.tickets.planning import NewTicket
from handlers.tickets.routing_snapshot import SnapshotRouter
from storage.repositories.ticket_batch import StaffRow

NOW = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)
CONFIG = load_business_config()


def client(customer_id: int, manager_id: int | None = None, segment: str = "mass") -> ClientProfile:
    return ClientProfile(customer_id=customer_id, name=f"C{customer_id}", kind="person", segment=segment,
                         language="ru", phones=(), email=None, telegram_user_id=None, account_numbers=(),
                         manager_id=manager_id, manager_name=None, has_consent=True)


def opening(key: str | None, customer_id: int | None = None, topic: str = "no_connection") -> Opening:
    request = NewTicket(channel="telegram", text="t", language="ru", topic=topic, message_key=key,
                        client=client(customer_id) if customer_id is not None else None)
    return Opening(request, NOW, check_follow_up=True, record_interaction=True, interaction_key=key)


class RecordingOpener(TicketOpener):
    """The batching of TicketOpener with a scripted batch instead of the database."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx=None)  # type: ignore[arg-type]
        self.batches: list[list[str | None]] = []
        self._answer = answer

    async def _open_batch(self, openings):  # type: ignore[no-untyped-def, override]
        keys = [o.request.message_key for o in openings]
        self.batches.append(keys)
        await asyncio.sleep(0)
        return self._answer(keys)


def follow_ups(keys):  # type: ignore[no-untyped-def]
    return [FollowUp(int((key or "0").lstrip("k"))) for key in keys]


async def test_concurrent_openings_share_a_batch_and_each_gets_its_own_outcome() -> None:
    opener = RecordingOpener(follow_ups)
    results = await asyncio.gather(*(opener.open(opening(f"k{i}", customer_id=i)) for i in range(1, 6)))
    assert [r.ticket_id for r in results] == [1, 2, 3, 4, 5]
    assert opener.batches == [["k1", "k2", "k3", "k4", "k5"]]


async def test_same_key_or_same_client_and_topic_never_share_a_batch() -> None:
    opener = RecordingOpener(follow_ups)
    await asyncio.gather(
        opener.open(opening("k1", customer_id=1)),
        opener.open(opening("k1", customer_id=2)),  # the same message again: next batch
        opener.open(opening("k2", customer_id=1)),  # the same client and topic: next batch
        opener.open(opening("k3", customer_id=1, topic="line_damage")),  # another topic: same batch
        opener.open(opening("k4")),
    )
    assert opener.batches == [["k1", "k3", "k4"], ["k1", "k2"]]


async def test_batches_are_capped() -> None:
    opener = RecordingOpener(follow_ups)
    opener._max = 2
    await asyncio.gather(*(opener.open(opening(f"k{i}")) for i in range(1, 6)))
    assert opener.batches == [["k1", "k2"], ["k3", "k4"], ["k5"]]


async def test_a_unique_key_clash_is_retried_one_by_one_and_fails_only_its_opening() -> None:
    def answer(keys):  # type: ignore[no-untyped-def]
        if "k2" in keys:  # someone else wrote k2 between the read and the write
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return follow_ups(keys)

    opener = RecordingOpener(answer)
    results = await asyncio.gather(*(opener.open(opening(f"k{i}")) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == FollowUp(1) and results[2] == FollowUp(3)
    assert isinstance(results[1], IntegrityError)
    assert opener.batches == [["k1", "k2", "k3"], ["k1"], ["k2"], ["k3"]]


async def test_a_failed_batch_fails_every_caller_and_the_next_batch_runs() -> None:
    calls = 0

    def answer(keys):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("INSERT", {}, ConnectionResetError("server closed the connection"))
        return follow_ups(keys)

    opener = RecordingOpener(answer)
    results = await asyncio.gather(*(opener.open(opening(f"k{i}")) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, OperationalError) for r in results)
    assert await opener.open(opening("k3")) == FollowUp(3)


async def test_per_opening_errors_and_duplicates_reach_only_their_caller() -> None:
    def answer(keys):  # type: ignore[no-untyped-def]
        return [InvalidRequest("unknown department"), DuplicateMessage("k2"), FollowUp(3)]

    opener = RecordingOpener(answer)
    results = await asyncio.gather(*(opener.open(opening(f"k{i}")) for i in (1, 2, 3)), return_exceptions=True)
    assert isinstance(results[0], InvalidRequest)
    assert isinstance(results[1], IntegrityError)  # what callers already handle for a repeated message
    assert results[2] == FollowUp(3)


async def test_a_caller_that_gave_up_before_its_batch_is_not_opened() -> None:
    opener = RecordingOpener(follow_ups)
    first = asyncio.ensure_future(opener.open(opening("k1")))
    gone = asyncio.ensure_future(opener.open(opening("k2")))
    await asyncio.sleep(0)  # both queued, the batch task not started yet
    gone.cancel()
    assert await first == FollowUp(1)
    assert opener.batches == [["k1"]]


# ------------------------------------------------------------------ routing from a snapshot

DEPTS = Departments({d.code: i for i, d in enumerate(CONFIG.departments, start=1)},
                    {i: d.code for i, d in enumerate(CONFIG.departments, start=1)})
TECH = DEPTS.id("tech_support")
SUBSCRIBER = DEPTS.id("subscriber_service")


def staff(id_: int, department_id: int, role: str = "agent", on_duty: bool = True,
          load: int | None = 0) -> StaffRow:
    # The snapshot counts the load of on-duty agents and managers (of the departments asked about) only.
    candidate = on_duty and role in ("agent", "manager")
    return StaffRow(id_, department_id, f"S{id_}", role, on_duty, load if candidate else None)


def test_least_loaded_counts_the_batch_own_assignments_up_to_the_cap() -> None:
    cap = CONFIG.department("tech_support").max_open_per_agent
    router = SnapshotRouter(CONFIG, DEPTS, [staff(7, TECH, load=cap - 2), staff(3, TECH, load=cap - 1)])
    routes = [router.route("no_connection", client(1)) for _ in range(4)]
    assert [(r.assignee_id, r.reason) for r in routes] == [
        (7, "least_loaded"), (3, "least_loaded"), (7, "least_loaded"), (None, "queue")]
    assert all(r.department_code == "tech_support" for r in routes)


def test_personal_manager_on_duty_takes_account_topics_into_their_department() -> None:
    manager = staff(5, SUBSCRIBER, role="manager", load=None)  # not a candidate of tech support: no load read
    router = SnapshotRouter(CONFIG, DEPTS, [manager, staff(7, TECH)])
    topic = next(code for code, t in CONFIG.topics.items() if t.account_management)
    route = router.route(topic, client(1, manager_id=5))
    assert (route.assignee_id, route.reason) == (5, "personal_manager")
    assert route.department_code == "subscriber_service"
    # Not an account topic: the department's least-loaded agent, unless the manager is asked for.
    assert router.route("no_connection", client(1, manager_id=5)).assignee_id == 7
    assert router.route("no_connection", client(1, manager_id=5), prefer_manager=True).assignee_id == 5


def test_off_duty_or_missing_manager_falls_back_to_least_loaded() -> None:
    topic = next(code for code, t in CONFIG.topics.items() if t.account_management)
    department = DEPTS.id(CONFIG.topics[topic].department)
    off_duty = staff(5, department, role="manager", on_duty=False)
    router = SnapshotRouter(CONFIG, DEPTS, [off_duty, staff(8, department)])
    assert router.route(topic, client(1, manager_id=5)).reason == "least_loaded"
    assert router.route(topic, client(1, manager_id=99)).assignee_id == 8  # inactive: not in the snapshot


@pytest.mark.parametrize(("people", "expected"), [
    ([staff(4, TECH, role="supervisor"), staff(2, TECH, load=30), staff(9, 1, role="admin")], [2, 4]),
    ([staff(4, TECH, role="supervisor", on_duty=False), staff(2, TECH, on_duty=False),
      staff(9, SUBSCRIBER, role="admin")], [4]),
    ([staff(2, TECH, on_duty=False), staff(9, SUBSCRIBER, role="admin"), staff(1, 1, role="admin")], [1, 9]),
])
def test_queued_alert_fallback_on_duty_then_supervisors_then_admins(people, expected) -> None:  # type: ignore[no-untyped-def]
    assert SnapshotRouter(CONFIG, DEPTS, people).alert_fallback(TECH) == expected
