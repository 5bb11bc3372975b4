"""Pure helpers of the Telegram adapter: splitting, escaping, document periods, secrets."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from bot.documents import period_range
from bot.texts import esc, split_text, truncate
from bot.webhook import webhook_secret
from config import Settings


def test_escape_user_text_for_html():
    assert esc("<b>Ромашка & Co</b>") == "&lt;b&gt;Ромашка &amp; Co&lt;/b&gt;"


@given(st.text(min_size=0, max_size=20_000))
def test_split_keeps_everything_and_respects_the_limit(text):
    chunks = split_text(text)
    assert all(len(chunk) <= 4096 for chunk in chunks)
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")


def test_split_prefers_paragraphs_and_never_cuts_entities():
    text = ("Абзац. " * 300 + "\n\n") * 5
    chunks = split_text(text)
    assert len(chunks) > 1 and all(len(c) <= 4096 for c in chunks)
    escaped = esc("&" * 5000)
    for chunk in split_text(escaped):
        assert not chunk.endswith(("&", "&a", "&am", "&amp")) or chunk.endswith("&amp;")


def test_truncate():
    assert truncate("abc", 5) == "abc" and truncate("abcdef", 4) == "abc…"


def test_period_ranges():
    today = date(2026, 11, 22)
    assert period_range("lm", today) == (date(2026, 10, 1), date(2026, 10, 31))
    assert period_range("tm", today) == (date(2026, 11, 1), today)
    assert period_range("lq", today) == (date(2026, 7, 1), date(2026, 9, 30))
    assert period_range("6m", today) == (date(2026, 6, 1), today)
    assert period_range("ly", today) == (date(2025, 1, 1), date(2025, 12, 31))
    assert period_range("lq", date(2026, 2, 10)) == (date(2025, 10, 1), date(2025, 12, 31))
    assert period_range("lm", date(2026, 1, 5)) == (date(2025, 12, 1), date(2025, 12, 31))


def test_webhook_secret_is_generated_once_and_kept(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    first = webhook_secret(settings)
    assert len(first) >= 32 and first == webhook_secret(settings)
    assert (tmp_path / "telegram_webhook_secret").stat().st_mode & 0o077 == 0
    explicit = Settings(_env_file=None, data_dir=tmp_path, telegram_webhook_secret="given")  # type: ignore[call-arg]
    assert webhook_secret(explicit) == "given"
