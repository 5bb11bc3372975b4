from handlers.classification.normalize import (
    EMAIL_TOKEN,
    NUMBER_TOKEN,
    PHONE_TOKEN,
    URL_TOKEN,
    cap_length,
    lemma,
    normalize_text,
    prepare,
    tokenize,
)
from handlers.classification.urgency import detect_urgency


def test_case_and_yo_are_folded():
    assert normalize_text("ЁЛКА Ещё") == "елка еще"


def test_placeholders_replace_urls_emails_phones_and_numbers():
    text = "Пишите на ivan.petrov@mail.ru, звоните +7 (912) 345-67-89, см. https://isp.example/pay?id=1 договор 123456"
    normalized = normalize_text(text)
    assert EMAIL_TOKEN in normalized and "mail.ru" not in normalized
    assert PHONE_TOKEN in normalized and "912" not in normalized
    assert URL_TOKEN in normalized and "https" not in normalized
    assert NUMBER_TOKEN in normalized and "123456" not in normalized


def test_tokenize_drops_punctuation_and_emoji():
    assert tokenize(normalize_text("Интернет!!! не работает 😡😡")) == ["интернет", "не", "работает"]


def test_russian_lemmas_and_other_words_untouched():
    assert lemma("оплатил") == "оплатить"
    assert lemma("роутеры") == "роутер"
    assert lemma("routers") == "routers"
    lemmas, surface = prepare("Не работают роутеры")
    assert lemmas == "не работать роутер"
    assert surface == "не работают роутеры"


def test_lemma_cache_is_used():
    lemma.cache_clear()
    lemma("договора")
    lemma("договора")
    assert lemma.cache_info().hits >= 1


def test_cap_length_keeps_head_and_tail():
    text = "начало " + "x" * 60_000 + " конец"
    capped = cap_length(text)
    assert len(capped) < 3000
    assert capped.startswith("начало") and capped.endswith("конец")


def test_urgency_flags_outages_and_urgent_words():
    assert detect_urgency("Интернет не работает уже 3 дня").urgent
    assert detect_urgency("срочно нужен мастер").urgent
    assert detect_urgency("internet down, need it fixed ASAP").urgent
    assert detect_urgency("no internet!!!!!!").urgent
    assert not detect_urgency("пришлите акт сверки").urgent
    assert not detect_urgency("what is my balance").urgent
    assert 0.0 <= detect_urgency("СРОЧНО!!! НЕ РАБОТАЕТ ИНТЕРНЕТ УЖЕ НЕДЕЛЮ").score <= 1.0


def test_placeholders_need_only_their_marker_character():
    # normalize_text skips a substitution when its marker ("@", "." or "://", a digit) is absent:
    # each of these has nothing but the marker that pattern needs
    assert normalize_text("see http://localhost/pay") == f"see {URL_TOKEN}"
    assert normalize_text("write to a@b.ru") == f"write to {EMAIL_TOKEN}"
    assert normalize_text("договор ٣٤٥") == f"договор {NUMBER_TOKEN}"  # Arabic-Indic digits are digits too
    assert normalize_text("номер 8 912 345 67 89") == f"номер {PHONE_TOKEN}"
    assert normalize_text("Просто текст, без цифр!") == "просто текст, без цифр!"


def test_urgency_words_match_in_any_case():
    # the word patterns run on the lower-cased text instead of with re.IGNORECASE
    for text in ("срочно нужен мастер", "интернет не работает уже 3 дня", "office: outage since two days",
                 "нет интернета, клиенты не могут оплатить", "need it ASAP"):
        reasons = set(detect_urgency(text).reasons)
        assert reasons, text
        for variant in (text.upper(), text.title(), text.swapcase()):
            assert set(detect_urgency(variant).reasons) - {"caps"} == reasons - {"caps"}, variant
