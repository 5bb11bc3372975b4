"""The business configuration: departments, topics, calendars, IVR menu and every text the product says.

Shipped defaults live in `config/default.yaml` and `config/texts.yaml`; an installation overrides any part
of them with its own YAML file (`CONFIG_FILE`), merged key by key. Problems are reported as
`file: key.path: problem` so an administrator can fix them without reading a traceback.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_FILE = CONFIG_DIR / "default.yaml"
# One texts file per feature (common, bot, ivr, tickets...) so features do not edit each other's files.
TEXTS_DIR = CONFIG_DIR / "texts"
LANGUAGES = ("ru", "en")
PRIORITIES = ("low", "normal", "high", "urgent")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """'90s', '30m', '4h', '2d' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"{value!r} is not a duration like '30m', '4h' or '2d'")


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intent: reject them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalizedText(_Strict):
    ru: str
    en: str

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.ru


class Calendar(_Strict):
    """Business hours of a department. `always_open` departments count every hour for SLA."""

    timezone: str = "Europe/Moscow"
    always_open: bool = False
    hours: dict[str, tuple[time, time] | None] = Field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    # Working Saturdays and the like: days that are worked although their weekday is not.
    working_days: dict[date, tuple[time, time]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must map weekdays (mon..sun) to 'HH:MM-HH:MM' or null")
        out: dict[str, Any] = {}
        for day, span in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r} is not a weekday; use {', '.join(WEEKDAYS)}")
            out[day] = None if span in (None, "", "closed") else _parse_span(span)
        return out

    @field_validator("working_days", mode="before")
    @classmethod
    def _working_days(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must map dates to 'HH:MM-HH:MM'")
        return {day: _parse_span(span) for day, span in value.items()}

    @model_validator(mode="after")
    def _has_hours(self) -> Calendar:
        if not self.always_open and not any(self.hours.values()) and not self.working_days:
            raise ValueError("a calendar that is not always_open needs business hours")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _parse_span(span: Any) -> tuple[time, time]:
    if not isinstance(span, str) or "-" not in span:
        raise ValueError(f"{span!r} is not a span like '09:00-18:00'")
    start_s, end_s = (part.strip() for part in span.split("-", 1))
    try:
        start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
    except ValueError:
        raise ValueError(f"{span!r} is not a span like '09:00-18:00'") from None
    if end <= start:
        raise ValueError(f"{span!r} ends before it starts")
    return start, end


class Department(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")
    name: LocalizedText
    telegram_chat_id: int | None = None
    phone: str | None = None
    calendar: str = "standard"
    max_open_per_agent: int = Field(default=25, ge=1)
    # Where a breach of this department's SLA goes next (e.g. first line -> subscriber service).
    escalates_to: str | None = None


class Sla(_Strict):
    first_response: timedelta
    resolution: timedelta

    @field_validator("first_response", "resolution", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


AutoAnswer = Literal["balance", "documents", "knowledge_base"]


class Topic(_Strict):
    title: LocalizedText
    department: str
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    sla: Sla
    auto_answer: AutoAnswer | None = None
    # Account-management topics go to the client's personal manager first.
    account_management: bool = False


class Segment(_Strict):
    title: LocalizedText
    # How many priority steps a request of this segment is raised (corporate clients first).
    priority_boost: int = Field(default=0, ge=0, le=3)
    account_management_topics: tuple[str, ...] = ()


class TicketRules(_Strict):
    follow_up_window: timedelta = timedelta(hours=72)
    auto_close_after: timedelta = timedelta(hours=72)
    sla_warning_ratio: float = Field(default=0.8, gt=0, lt=1)
    priority_sla_factor: dict[str, float] = Field(
        default_factory=lambda: {"low": 2.0, "normal": 1.0, "high": 0.5, "urgent": 0.25}
    )

    @field_validator("follow_up_window", "auto_close_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class IvrMenuItem(_Strict):
    key: str = Field(pattern=r"^[0-9*#]$")
    action: Literal["balance", "documents", "technical_problem", "manager", "operator"]
    label: LocalizedText


class Ivr(_Strict):
    voices: dict[str, str] = Field(default_factory=lambda: {"ru": "Polly.Tatyana", "en": "Polly.Joanna"})
    gather_timeout_seconds: int = Field(default=6, ge=1, le=60)
    record_max_seconds: int = Field(default=120, ge=5, le=3600)
    dial_timeout_seconds: int = Field(default=25, ge=5, le=120)
    operator_department: str = "call_center"
    operator_phone: str | None = None
    menu: tuple[IvrMenuItem, ...]

    @field_validator("menu")
    @classmethod
    def _unique_keys(cls, value: tuple[IvrMenuItem, ...]) -> tuple[IvrMenuItem, ...]:
        keys = [item.key for item in value]
        if len(keys) != len(set(keys)):
            raise ValueError("menu keys must be unique")
        return value


class Company(_Strict):
    name: LocalizedText
    legal_details: LocalizedText
    phone: str
    email: str | None = None
    website: str | None = None
    payment_methods: LocalizedText


class BusinessConfig(_Strict):
    company: Company
    default_language: Literal["ru", "en"] = "ru"
    default_region: str = "RU"
    calendars: dict[str, Calendar]
    departments: tuple[Department, ...]
    topics: dict[str, Topic]
    out_of_scope_topic: str = "out_of_scope"
    segments: dict[str, Segment] = Field(default_factory=dict)
    tickets: TicketRules = TicketRules()
    ivr: Ivr
    texts: dict[str, LocalizedText]

    @model_validator(mode="after")
    def _cross_references(self) -> BusinessConfig:
        codes = [d.code for d in self.departments]
        if len(codes) != len(set(codes)):
            raise ValueError("departments: codes must be unique")
        known = set(codes)
        for dept in self.departments:
            if dept.calendar not in self.calendars:
                raise ValueError(f"departments.{dept.code}.calendar: unknown calendar {dept.calendar!r}")
            if dept.escalates_to is not None and dept.escalates_to not in known:
                raise ValueError(
                    f"departments.{dept.code}.escalates_to: unknown department {dept.escalates_to!r}"
                )
        for code, topic in self.topics.items():
            if topic.department not in known:
                raise ValueError(f"topics.{code}.department: unknown department {topic.department!r}")
        if self.out_of_scope_topic not in self.topics:
            raise ValueError(f"out_of_scope_topic: {self.out_of_scope_topic!r} is not among topics")
        for name, segment in self.segments.items():
            for topic in segment.account_management_topics:
                if topic not in self.topics:
                    raise ValueError(f"segments.{name}.account_management_topics: unknown topic {topic!r}")
        if self.ivr.operator_department not in known:
            raise ValueError(f"ivr.operator_department: unknown department {self.ivr.operator_department!r}")
        missing = set(self.tickets.priority_sla_factor) ^ set(PRIORITIES)
        if missing:
            raise ValueError(f"tickets.priority_sla_factor: must name exactly {', '.join(PRIORITIES)}")
        return self

    def department(self, code: str) -> Department:
        for dept in self.departments:
            if dept.code == code:
                return dept
        raise KeyError(code)

    def calendar_of(self, department_code: str) -> Calendar:
        return self.calendars[self.department(department_code).calendar]

    def text(self, key: str, lang: str) -> str:
        return self.texts[key].get(lang)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def load_business_config(override_file: Path | None = None) -> BusinessConfig:
    data = _read_yaml(DEFAULT_FILE)
    data["texts"] = _read_shipped_texts()
    source = "config/default.yaml"
    if override_file is not None:
        data = deep_merge(data, _read_yaml(Path(override_file)))
        source = str(override_file)
    try:
        config = BusinessConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    _check_texts_complete(config, source)
    return config


def _read_shipped_texts() -> dict[str, Any]:
    texts: dict[str, Any] = {}
    owner: dict[str, Path] = {}
    for path in sorted(TEXTS_DIR.glob("*.yaml")):
        for key, value in _read_yaml(path).items():
            if key in owner:
                raise ConfigError(f"{path}: text {key!r} is already defined in {owner[key].name}")
            owner[key] = path
            texts[key] = value
    return texts


def _check_texts_complete(config: BusinessConfig, source: str) -> None:
    for key, text in config.texts.items():
        for lang in LANGUAGES:
            if not text.get(lang).strip():
                raise ConfigError(f"{source}: texts.{key}.{lang}: empty text")
