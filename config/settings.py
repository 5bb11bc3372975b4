"""Process settings: everything that differs between installations and is not business logic.

Read from the environment and `.env`. Secrets are `SecretStr` so they never end up in logs or reprs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./data/frontoffice.db"
SUPPORTED_DRIVERS = {"sqlite+aiosqlite", "postgresql+asyncpg"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = DEFAULT_SQLITE_URL
    redis_url: str | None = None
    # Key prefix in Redis, so several installations (or test runs) can share one server.
    redis_prefix: str = Field(default="fo:", pattern=r"^[A-Za-z0-9_.:-]{1,40}$")
    bot_token: SecretStr | None = None
    telegram_api_server: str = "https://api.telegram.org"
    public_base_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    rasa_url: str | None = None
    rasa_actions_token: SecretStr | None = None
    billing_webhook_secret: SecretStr | None = None
    # The operator's billing JSON API; unset means the embedded billing (our own tables).
    billing_url: str | None = None
    billing_auth_header: SecretStr | None = None  # "Authorization: Bearer ..." or "X-Api-Key: ..."
    billing_paths: dict[str, str] = Field(default_factory=dict)  # JSON, overrides storage.billing_http paths
    billing_timeout: float = Field(default=2.0, gt=0, le=30)
    billing_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    download_link_secret: SecretStr | None = None
    smtp_url: SecretStr | None = None
    config_file: Path | None = None
    log_level: str = "INFO"
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=1, le=65535)
    data_dir: Path = Path("./data")
    # Demo data makes the first run useful; an operator turns it off for production.
    seed_demo: bool = True

    @field_validator("redis_url", "bot_token", "public_base_url", "telegram_webhook_secret",
                     "twilio_auth_token", "rasa_url", "rasa_actions_token", "billing_webhook_secret",
                     "smtp_url", "config_file", "billing_url", "billing_auth_header", "download_link_secret",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `FOO=` in a .env file means "not set", not "set to the empty string".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"cannot parse {value!r}: {exc}") from None
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"driver {url.drivername!r} is not supported; use one of {sorted(SUPPORTED_DRIVERS)}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("public_base_url", "telegram_api_server", "rasa_url", "billing_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @property
    def redis_url_safe(self) -> str | None:
        """REDIS_URL with any password masked, for logs and messages."""
        if not self.redis_url:
            return None
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.redis_url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
        return self.redis_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's multi-line report into one line per bad variable."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"environment: {problems}") from None
