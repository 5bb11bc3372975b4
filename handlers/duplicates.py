"""Duplicate customers: found by shared phones and e-mails and by fuzzy names; merged without losing anything.

Finding: comparing every pair of 100,000 customers is 5·10⁹ comparisons, so candidates come from blocking
keys: the same phone, the same e-mail, or the same pair of name-token prefixes (so "Иванов Иван" and
"Иваноф Иван" meet, and so do "ООО «Ромашка»" and "Ромашка ООО"). Each candidate pair is then scored with
rapidfuzz. A pair is *sure* when a phone or e-mail is shared and the names agree; name-only or contact-only
similarity is left for a person (family members share phones; namesakes share names).

Merging moves accounts, phones, tickets, interactions, calls, subscriptions and notifications to the
survivor, fills its empty fields from the duplicate, and keeps the duplicate as a record pointing at the
survivor (`merged_into_id`), so old references still resolve.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from rapidfuzz import fuzz, process
from sqlalchemy import delete, select, update

from handlers.context import AppContext
from handlers.dto import InvalidRequest, NotFound
from storage.models import (
    Account,
    Call,
    Customer,
    CustomerPhone,
    Interaction,
    Notification,
    Subscription,
    Ticket,
)

SURE_SCORE = 0.9
MIN_SCORE = 0.6
NAME_ONLY_WEIGHT = 0.85
NAME_ONLY_MIN = 0.9
MAX_BLOCK = 100  # a blocking key shared by more customers than this is too common to mean anything
_LEGAL_FORMS = {"ооо", "оао", "зао", "пао", "ао", "ип", "нко", "llc", "ltd", "inc", "gmbh", "corp", "co", "plc",
                "ag", "sa", "ооо.", "ип."}
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


@dataclass(frozen=True)
class CustomerRecord:
    id: int
    name: str
    phones: tuple[str, ...] = ()
    email: str | None = None


@dataclass(frozen=True)
class DuplicatePair:
    a: int
    b: int
    score: float
    sure: bool
    reasons: tuple[str, ...] = ()
    names: tuple[str, str] = ("", "")


def normalize_name(name: str) -> str:
    """Lower case, ё→е, punctuation and legal forms dropped, tokens sorted (order does not matter)."""
    text = _NON_WORD.sub(" ", name.lower().replace("ё", "е")).split()
    return " ".join(sorted(t for t in text if t not in _LEGAL_FORMS)) or name.lower().strip()


def _email_key(email: str | None) -> str | None:
    if not email:
        return None
    local, _, domain = email.strip().lower().partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        local = local.split("+")[0].replace(".", "")
    return f"{local}@{domain}"


def _name_keys(normalized: str) -> set[str]:
    tokens = [t for t in normalized.split() if len(t) >= 2]
    prefixes = sorted({t[:4] for t in tokens})
    if len(prefixes) == 1:
        return {"n1:" + prefixes[0] + ":" + tokens[0][-2:]} if tokens else set()
    return {f"n2:{a}|{b}" for a, b in combinations(prefixes, 2)}


def find_duplicate_pairs(records: Iterable[CustomerRecord], min_score: float = MIN_SCORE) -> list[DuplicatePair]:
    """Candidate duplicate pairs, best first. Pure function: no database, so it can be benchmarked.

    Pairs sharing a phone or an e-mail are always scored. Within a name block only names similar enough
    to reach `min_score` on the name alone are kept, found with rapidfuzz's vectorised `cdist`.
    """
    items = list(records)
    normalized = {r.id: normalize_name(r.name) for r in items}
    by_id = {r.id: r for r in items}
    contact_blocks: dict[str, list[int]] = defaultdict(list)
    name_blocks: dict[str, list[int]] = defaultdict(list)
    for r in items:
        for phone in r.phones:
            contact_blocks["p:" + phone].append(r.id)
        if email := _email_key(r.email):
            contact_blocks["e:" + email].append(r.id)
        for key in _name_keys(normalized[r.id]):
            name_blocks[key].append(r.id)
    candidates: set[tuple[int, int]] = set()
    for members in contact_blocks.values():
        if 2 <= len(members) <= MAX_BLOCK:
            candidates.update(combinations(sorted(set(members)), 2))
    # Without a shared contact only near-identical names (a typo apart) are worth a person's time.
    cutoff = 100 * max(NAME_ONLY_MIN, min_score / NAME_ONLY_WEIGHT)
    for members in name_blocks.values():
        if len(members) < 2 or len(members) > MAX_BLOCK:
            continue
        ids = sorted(set(members))
        names = [normalized[i] for i in ids]
        matrix = process.cdist(names, names, scorer=fuzz.token_sort_ratio, score_cutoff=cutoff, dtype=np.uint8)
        rows, cols = np.nonzero(np.triu(matrix, k=1))
        candidates.update((ids[i], ids[j]) for i, j in zip(rows.tolist(), cols.tolist(), strict=True))
    pairs = []
    for a, b in candidates:
        pair = _score(by_id[a], by_id[b], normalized[a], normalized[b])
        if pair.score >= min_score:
            pairs.append(pair)
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return pairs


def _score(a: CustomerRecord, b: CustomerRecord, name_a: str, name_b: str) -> DuplicatePair:
    name = fuzz.token_sort_ratio(name_a, name_b) / 100
    shared_phone = bool(set(a.phones) & set(b.phones))
    shared_email = _email_key(a.email) is not None and _email_key(a.email) == _email_key(b.email)
    reasons = [f"name {name:.0%}"]
    if shared_phone:
        reasons.append("same phone")
    if shared_email:
        reasons.append("same e-mail")
    contact = shared_phone or shared_email
    if contact and name >= 0.85:
        score = 0.9 + 0.1 * name * (1.0 if shared_phone and shared_email else 0.9)
    elif contact:
        score = 0.5 + 0.35 * name  # same contact, different names: family, a company's switchboard...
    elif name >= NAME_ONLY_MIN:
        score = NAME_ONLY_WEIGHT * name  # similar names alone: namesakes are common, never sure
    else:
        score = 0.0
    return DuplicatePair(a=a.id, b=b.id, score=round(min(score, 1.0), 3), sure=score >= SURE_SCORE,
                         reasons=tuple(reasons), names=(a.name, b.name))


async def load_records(ctx: AppContext) -> list[CustomerRecord]:
    """Every live customer (not merged, not anonymised) with phones and e-mail."""
    async with ctx.uow() as uow:
        phones: dict[int, list[str]] = defaultdict(list)
        for cid, phone in (await uow.session.execute(select(CustomerPhone.customer_id, CustomerPhone.phone))).all():
            phones[cid].append(phone)
        rows = (await uow.session.execute(
            select(Customer.id, Customer.name, Customer.email)
            .where(Customer.merged_into_id.is_(None), Customer.anonymised_at.is_(None)))).all()
    return [CustomerRecord(id=cid, name=name, phones=tuple(phones.get(cid, ())), email=email)
            for cid, name, email in rows]


async def find_duplicates(ctx: AppContext, *, min_score: float = MIN_SCORE) -> list[DuplicatePair]:
    return find_duplicate_pairs(await load_records(ctx), min_score)


@dataclass
class MergeResult:
    survivor_id: int
    merged_id: int
    moved: dict[str, int] = field(default_factory=dict)


async def merge_customers(ctx: AppContext, survivor_id: int, duplicate_id: int) -> MergeResult:
    """Move everything of `duplicate_id` to `survivor_id`; the duplicate then points at the survivor."""
    if survivor_id == duplicate_id:
        raise InvalidRequest("a customer cannot be merged into itself")
    result = MergeResult(survivor_id, duplicate_id)
    async with ctx.uow() as uow:
        s = uow.session
        rows = {c.id: c for c in await s.scalars(
            select(Customer).where(Customer.id.in_([survivor_id, duplicate_id])).with_for_update(of=Customer))}
        survivor, dup = rows.get(survivor_id), rows.get(duplicate_id)
        if survivor is None or dup is None:
            raise NotFound("customer not found")
        if survivor.merged_into_id is not None:
            raise InvalidRequest(f"customer {survivor_id} was itself merged into {survivor.merged_into_id}")
        if dup.merged_into_id is not None:
            raise InvalidRequest(f"customer {duplicate_id} is already merged into {dup.merged_into_id}")

        async def move(model, column, name: str) -> None:  # type: ignore[no-untyped-def]
            moved = await s.execute(update(model).where(column == duplicate_id).values({column.key: survivor_id}))
            result.moved[name] = moved.rowcount or 0

        await move(Account, Account.customer_id, "accounts")
        await move(Ticket, Ticket.customer_id, "tickets")
        await move(Interaction, Interaction.customer_id, "interactions")
        await move(Call, Call.customer_id, "calls")
        await move(Notification, Notification.customer_id, "notifications")

        have = set((await s.scalars(select(CustomerPhone.phone).where(CustomerPhone.customer_id == survivor_id))).all())
        dup_phones = list(await s.scalars(select(CustomerPhone).where(CustomerPhone.customer_id == duplicate_id)))
        moved_phones = 0
        for phone in dup_phones:
            if phone.phone in have:
                await s.delete(phone)  # the survivor has it already
            else:
                phone.customer_id = survivor_id
                moved_phones += 1
        result.moved["phones"] = moved_phones

        kinds = set((await s.scalars(select(Subscription.kind).where(Subscription.customer_id == survivor_id))).all())
        await s.execute(delete(Subscription).where(Subscription.customer_id == duplicate_id,
                                                   Subscription.kind.in_(kinds or {""})))
        result.moved["subscriptions"] = (await s.execute(
            update(Subscription).where(Subscription.customer_id == duplicate_id)
            .values(customer_id=survivor_id))).rowcount or 0

        # The survivor keeps its own data and takes what it lacks from the duplicate.
        if dup.telegram_user_id is not None and survivor.telegram_user_id is None:
            telegram = dup.telegram_user_id
            dup.telegram_user_id = None
            await s.flush()
            survivor.telegram_user_id = telegram
        for attr in ("email", "manager_id"):
            if getattr(survivor, attr) is None and getattr(dup, attr) is not None:
                setattr(survivor, attr, getattr(dup, attr))
        if dup.consent_at is not None and (survivor.consent_at is None or dup.consent_at < survivor.consent_at):
            survivor.consent_at = dup.consent_at
        segments = list(ctx.config.segments)
        if dup.segment in segments and survivor.segment in segments and (
                ctx.config.segments[dup.segment].priority_boost > ctx.config.segments[survivor.segment].priority_boost):
            survivor.segment = dup.segment
        # Records merged into the duplicate earlier now point straight at the survivor.
        await s.execute(update(Customer).where(Customer.merged_into_id == duplicate_id)
                        .values(merged_into_id=survivor_id))
        dup.merged_into_id = survivor_id
        dup.telegram_user_id = None
        await uow.commit()
    return result
