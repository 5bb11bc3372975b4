"""Who may drive the phone line: Twilio (signed requests) or, without a token, only this machine.

Twilio signs the full URL it called plus the POST parameters. Behind a reverse proxy the URL we see
(http://10.0.0.5:8080/...) is not the one Twilio called (https://fo.example.com/...), so the URL is rebuilt
from PUBLIC_BASE_URL and the request's path and query.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
from collections.abc import Callable, Mapping

from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


class _Form(dict[str, str]):
    """The POST fields as the validator reads them: it asks `getall` first and, on a plain dict, falls back
    only after two AttributeErrors per field."""

    def getall(self, key: str) -> list[str]:
        return [self[key]]


class RequestGuard:
    def __init__(self, auth_token: str | None, public_base_url: str | None) -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None
        # Keyed once; each request hashes on a copy (the key schedule is not redone per request).
        self._hmac = hmac.new(auth_token.encode("utf-8"), digestmod="sha1") if auth_token else None
        self._base = public_base_url.rstrip("/") if public_base_url else None

    @property
    def signed(self) -> bool:
        return self._validator is not None

    def public_url(self, path_qs: str, seen_url: str | Callable[[], str]) -> str:
        """`seen_url` may be a function: building the URL as seen costs something, and with a public base URL
        configured it is not needed at all."""
        if self._base:
            return f"{self._base}{path_qs}"
        return seen_url() if callable(seen_url) else seen_url

    def allows(self, *, path_qs: str, seen_url: str | Callable[[], str], remote: str | None,
               headers: Mapping[str, str], params: Mapping[str, str]) -> bool:
        if self._validator is None:
            return is_loopback(remote)
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            return False
        url = self.public_url(path_qs, seen_url)
        # Twilio signs the URL it called, so checking that one costs a single HMAC. Only a signature that does
        # not match it gets the package's full check (which also tries the URL with and without its port).
        if signature.isascii() and hmac.compare_digest(self._signature(url, params), signature.encode()):
            return True
        return bool(self._validator.validate(url, _Form(params), signature))

    def _signature(self, url: str, params: Mapping[str, str]) -> bytes:
        """What `RequestValidator.compute_signature` computes for one value per field (HMAC-SHA1 of the URL
        followed by each field's name and value, by name), in one pass and without its per-field look-ups."""
        mac = self._hmac.copy()  # type: ignore[union-attr]  # only called with a token
        mac.update((url + "".join([name + params[name] for name in sorted(params)])).encode("utf-8"))
        return base64.b64encode(mac.digest())

    def warnings(self) -> list[str]:
        if self._validator is None:
            return ["TWILIO_AUTH_TOKEN is not set: the IVR answers requests from this machine (loopback) only"]
        if self._base is None:
            return ["PUBLIC_BASE_URL is not set: Twilio signatures are checked against the URL as seen here, "
                    "which fails behind a reverse proxy"]
        return []
