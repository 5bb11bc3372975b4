"""Which failures are the back end's (retry without using up the update's attempts) and which are the update's."""

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from bot.webhook import is_infrastructure_error
from handlers.dto import InvalidRequest, ServiceUnavailable


def _chained(outer: Exception, cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as inner:
            raise outer from inner
    except Exception as exc:
        return exc


@pytest.mark.parametrize("exc", [
    ServiceUnavailable("database"),
    RedisConnectionError("refused"),
    OperationalError("SELECT 1", {}, Exception("server closed the connection")),
    ConnectionRefusedError(111, "refused"),
    TimeoutError(),
    _chained(RuntimeError("handler failed"), RedisConnectionError("refused")),
])
def test_back_end_failures(exc):
    assert is_infrastructure_error(exc)


@pytest.mark.parametrize("exc", [ValueError("bad"), KeyError("x"), InvalidRequest("no"), RuntimeError("bug")])
def test_update_failures(exc):
    assert not is_infrastructure_error(exc)
