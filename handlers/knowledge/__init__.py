"""Knowledge base: articles answered before a ticket is opened, and grown from resolved tickets."""

from handlers.knowledge.service import KnowledgeBase, article_from_ticket, seed_default_articles

__all__ = ["KnowledgeBase", "article_from_ticket", "seed_default_articles"]
