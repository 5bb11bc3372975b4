from datetime import timedelta
from pathlib import Path

import pytest

from config import ConfigError, load_business_config, load_settings
from config.business import LANGUAGES, deep_merge, parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_configuration_is_complete():
    config = load_business_config()
    assert {d.code for d in config.departments} >= {
        "call_center", "subscriber_service", "tech_support", "finance", "billing", "field_service", "network", "sales"
    }
    for topic in config.topics.values():
        assert config.department(topic.department)
    for key, text in config.texts.items():
        for lang in LANGUAGES:
            assert text.get(lang).strip(), f"{key} has no {lang} text"
    assert config.calendars["standard"].timezone == "Europe/Moscow"


def test_override_merges_key_by_key(tmp_path):
    path = write(tmp_path, "departments:\n" + "".join(
        f"  - {{code: {c}, name: {{ru: X, en: X}}, calendar: round_the_clock}}\n"
        for c in ("call_center", "subscriber_service", "tech_support", "field_service", "sales")
    ) + "topics:\n  balance:\n    priority: high\n")
    config = load_business_config(path)
    assert config.topics["balance"].priority == "high"
    assert config.topics["balance"].department == "subscriber_service"  # kept from the defaults
    assert len(config.departments) == 5  # lists are replaced whole


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("topics:\n  balance:\n    department: nowhere\n", "topics.balance.department: unknown department 'nowhere'"),
        ("topics:\n  balance:\n    sla: {first_response: soon, resolution: 1h}\n", "topics.balance.sla.first_response"),
        ("calendars:\n  standard:\n    timezone: Mars/Olympus\n", "unknown time zone 'Mars/Olympus'"),
        ("calendars:\n  standard:\n    hours: {mon: '18:00-09:00'}\n", "ends before it starts"),
        ("topics:\n  balance:\n    colour: red\n", "topics.balance.colour: Extra inputs are not permitted"),
        ("texts:\n  greeting: {ru: Привет}\n", "texts.greeting.en: Field required"),
        ("texts:\n  greeting: {ru: Привет, en: '  '}\n", "texts.greeting.en: empty text"),
        ("ivr:\n  operator_department: ghosts\n", "ivr.operator_department: unknown department 'ghosts'"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("topics: [unclosed\n", "not valid YAML (line 2"),
    ],
)
def test_broken_configuration_names_file_key_and_problem(tmp_path, yaml_text, expected):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_business_config(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message
    assert "\n" not in message


def test_missing_override_file():
    with pytest.raises(ConfigError, match="file not found"):
        load_business_config(Path("/definitely/not/here.yaml"))


@pytest.mark.parametrize(("value", "seconds"), [("90s", 90), ("30m", 1800), ("4h", 14400), ("2d", 172800), (15, 15)])
def test_durations(value, seconds):
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["soon", "-5m", "4 hours", True, None])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_deep_merge_replaces_lists_and_merges_mappings():
    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}, "d": 1}


def test_settings_defaults(monkeypatch):
    for var in ("DATABASE_URL", "REDIS_URL", "BOT_TOKEN", "HTTP_PORT"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings(_env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:///./data/frontoffice.db"
    assert settings.redis_url is None and settings.http_port == 8080 and settings.is_sqlite


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: driver 'mysql' is not supported"),
        ("DATABASE_URL", "::::", "DATABASE_URL: cannot parse"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: must start with redis://"),
        ("HTTP_PORT", "99999", "HTTP_PORT"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL: must be one of"),
    ],
)
def test_bad_settings_are_one_clear_line(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_empty_variables_mean_unset_and_secrets_stay_hidden(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("BOT_TOKEN", "123:TOKENVALUE42")
    settings = load_settings(_env_file=None)
    assert settings.redis_url is None
    assert "TOKENVALUE42" not in repr(settings)


def test_redis_password_is_masked(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in load_settings(_env_file=None).redis_url_safe
