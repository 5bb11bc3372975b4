"""Knowledge-base use cases: answer from articles before a ticket is opened, grow the base from tickets.

The index lives in memory (search must take a millisecond, not a query). Several processes stay in step
through a version counter in the key-value store: whoever changes the articles bumps it, and every process
rebuilds its index when it sees a newer version on its next search (checked at most once a second).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import select

from handlers.context import AppContext
from handlers.dto import Actor, InvalidRequest, KnowledgeAnswer, NotFound, PermissionDenied
from handlers.knowledge.normalize import normalize

if TYPE_CHECKING:
    from handlers.knowledge.index import KnowledgeIndex
from storage.models import KnowledgeArticle, Staff, Ticket, TicketEvent

log = logging.getLogger(__name__)

DEFAULT_ARTICLES = Path(__file__).resolve().parents[2] / "data" / "knowledge" / "articles.yaml"
VERSION_KEY = "kb:version"
# A match this strong is shown as the answer ("did this help?"); weaker ones only as suggestions.
STRONG_MATCH = 0.5
SUGGESTION = 0.3


@lru_cache(maxsize=4)
def background_texts(language: str) -> tuple[str, ...]:
    """How clients write in this language (the classifier's training data), for word weights."""
    from handlers.classification.model_store import DEFAULT_DATA_DIR
    from handlers.classification.nlu_data import load_examples

    path = DEFAULT_DATA_DIR / f"{language}.yml"
    try:
        return tuple(example.text for example in load_examples(path))
    except Exception:  # the index works without it, only with coarser word weights
        log.warning("no background texts for the knowledge index from %s", path)
        return ()


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9а-я]+", "-", text.lower().replace("ё", "е")).strip("-")[:60] or "article"


class KnowledgeBase:
    """Search port used by intake (`ctx.extras["knowledge"]`), the bot, the IVR and Rasa."""

    def __init__(self, ctx: AppContext, *, strong: float = STRONG_MATCH, check_every: float = 1.0) -> None:
        self._ctx = ctx
        self._strong = strong
        self._check_every = check_every
        self._indexes: dict[str, KnowledgeIndex] = {}
        self._version: str | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._ctx.uow() as uow:
            rows = list(await uow.session.scalars(select(KnowledgeArticle).where(KnowledgeArticle.is_active.is_(True))))
        # The index (and pymorphy3) takes a while to load: pay for it on the first search, not at start-up.
        from handlers.knowledge.index import ArticleDoc, KnowledgeIndex

        by_language: dict[str, list[ArticleDoc]] = {}
        for row in rows:
            variants = tuple(str(v) for v in (row.questions or {}).get("variants", []) if str(v).strip())
            by_language.setdefault(row.language, []).append(
                ArticleDoc(row.id, row.language, row.topic, row.title, variants, row.answer))
        # Building the index is CPU work; keep the event loop free for requests.
        self._indexes = await asyncio.to_thread(
            lambda: {lang: KnowledgeIndex(docs, normalize, background_texts(lang))
                     for lang, docs in by_language.items()})

    async def _ensure_fresh(self) -> None:
        now = time.monotonic()
        if self._indexes and now - self._checked_at < self._check_every:
            return
        async with self._lock:
            if self._indexes and time.monotonic() - self._checked_at < self._check_every:
                return
            version = await self._ctx.kv.kv.get(VERSION_KEY)
            if not self._indexes or version != self._version:
                await self.refresh()
                self._version = version
            self._checked_at = time.monotonic()

    async def suggestions(self, text: str, language: str, topic: str | None = None, k: int = 3) -> list[KnowledgeAnswer]:
        await self._ensure_fresh()
        index = self._indexes.get(language) or self._indexes.get(self._ctx.config.default_language)
        if index is None:
            return []
        hits = index.search(text, topic=topic, k=k)
        return [KnowledgeAnswer(h.article.id, h.article.title, h.article.answer, round(h.score, 3))
                for h in hits if h.score >= SUGGESTION]

    async def search(self, text: str, language: str, topic: str | None = None) -> KnowledgeAnswer | None:
        """The best article when the match is strong enough to answer with it, else None."""
        found = await self.suggestions(text, language, topic, k=1)
        return found[0] if found and found[0].score >= self._strong else None

    async def changed(self) -> None:
        """Call after articles change: every process rebuilds its index on its next search."""
        await self._ctx.kv.kv.set(VERSION_KEY, str(time.time_ns()))
        self._checked_at = 0.0


def _load_default_articles(path: Path = DEFAULT_ARTICLES) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of articles")
    return data


async def seed_default_articles(ctx: AppContext, path: Path = DEFAULT_ARTICLES) -> int:
    """Insert the shipped articles that are missing (by slug and language); returns how many were added."""
    added = 0
    async with ctx.uow() as uow:
        existing = set(await uow.session.scalars(select(KnowledgeArticle.slug)))
        for item in _load_default_articles(path):
            for lang in ("ru", "en"):
                body = item.get(lang)
                slug = f"{item['slug']}.{lang}"
                if not body or slug in existing:
                    continue
                uow.session.add(KnowledgeArticle(
                    slug=slug, topic=item.get("topic"), language=lang, title=body["title"].strip(),
                    questions={"variants": [str(q) for q in body.get("questions", [])]},
                    answer=body["answer"].strip(),
                ))
                added += 1
        await uow.commit()
    return added


async def article_from_ticket(
    ctx: AppContext, actor: Actor, ticket_id: int, *, title: str | None = None, question: str | None = None,
    answer: str | None = None,
) -> KnowledgeAnswer:
    """Turn a resolved ticket's answer into an article (staff `/kb`).

    The question defaults to the client's request, the answer to the last staff reply. Staff of the ticket's
    department, the ticket's assignee, supervisors and admins may do it.
    """
    if actor.kind != "staff" or actor.staff_id is None:
        raise PermissionDenied("only staff can add knowledge-base articles")
    async with ctx.uow() as uow:
        ticket = await uow.session.get(Ticket, ticket_id)
        staff = await uow.session.get(Staff, actor.staff_id)
        if ticket is None or staff is None:
            raise NotFound("ticket")
        allowed = (staff.role in ("supervisor", "admin") or ticket.department_id == staff.department_id
                   or ticket.assignee_id == staff.id)
        if not allowed:
            raise PermissionDenied("not your department's ticket")
        if ticket.status not in ("resolved", "closed"):
            raise InvalidRequest("only a resolved ticket's answer can become an article")
        if answer is None:
            answer = await _last_staff_answer(uow.session, ticket.id)
        if not answer:
            raise InvalidRequest("the ticket has no staff answer to publish")
        question = (question or ticket.text or ticket.subject).strip()[:500]
        title = (title or ticket.subject).strip()[:300]
        article = KnowledgeArticle(
            slug=f"ticket-{ticket.number}-{_slugify(title)}"[:100], topic=ticket.topic, language=ticket.language,
            title=title, questions={"variants": [question]}, answer=answer.strip(), source_ticket_id=ticket.id,
        )
        uow.session.add(article)
        await uow.commit()
    knowledge = ctx.extras.get("knowledge")
    if isinstance(knowledge, KnowledgeBase):
        await knowledge.changed()
    else:
        await ctx.kv.kv.set(VERSION_KEY, str(time.time_ns()))
    return KnowledgeAnswer(article.id, article.title, article.answer, 1.0)


async def _last_staff_answer(session: Any, ticket_id: int) -> str | None:
    events = await session.scalars(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket_id, TicketEvent.author_kind == "staff")
        .order_by(TicketEvent.created_at.desc(), TicketEvent.id.desc())
    )
    for event in events:
        text = (event.payload or {}).get("text")
        if isinstance(text, str) and text.strip():
            return text
    return None
