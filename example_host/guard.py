"""Who may call the server: the Host and Origin checks, and the token beyond loopback.

A server on loopback is reachable by every web page the user's browser opens: a page on
another site can send requests to ``http://127.0.0.1:8765`` (cross-site requests), and a name
the attacker controls can be made to resolve to 127.0.0.1 (DNS rebinding). ``AccessGuard``
refuses both before any route runs:

- ``Host`` must be a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``) or the name the
  server was bound to (``forbidden_host``). A server bound beyond loopback cannot know every
  name it is reached by, so there the token does this job.
- ``Origin``, when a browser sends one, must be the server's own (``forbidden_origin``), and so
  must ``Sec-Fetch-Site`` on ``/api`` routes (a browser's ``same-site`` or ``cross-site``).
- With a token (always beyond loopback), every ``/api`` route needs
  ``Authorization: Bearer <token>`` or ``?token=<token>`` (``unauthorized``, 401). The page and
  its static files carry no data and need none; the page sends the token it was opened with.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.responses import JSONResponse

from hookspecs import TtsError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TOKEN_ENV = "EXAMPLE_HOST_TOKEN"
"""A token from the environment is used as given and never printed or logged."""
API_PREFIX = "/api/"
CROSS_SITE = frozenset({b"same-site", b"cross-site"})
"""``Sec-Fetch-Site`` values of a request some other page made (``same-site`` includes another
port of the same host: another local server's page)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A random token for a server bound beyond loopback without one (printed once)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Access:
    """The server's access rules: the host it is bound to, and its token (None: no token)."""

    bound_host: str = "127.0.0.1"
    token: str | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bound_host)

    def host_allowed(self, host: str) -> bool:
        """Whether a request's ``Host`` name may reach this server."""
        if not self.loopback:
            return True  # the token guards a server reachable by names it cannot list
        name = host.strip("[]").lower().rstrip(".")
        return is_loopback(name) or name == self.bound_host.strip("[]").lower()

    def token_matches(self, given: str | None) -> bool:
        """Whether ``given`` is this server's token (constant-time), or no token is needed."""
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def split_host(value: str) -> tuple[str, str]:
    """``("name", "port")`` of a ``Host`` header (``"[::1]:8765"`` → ``("::1", "8765")``)."""
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.removeprefix(":")
    name, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return name, port


def same_origin(origin: str, host_header: str, scheme: str) -> bool:
    """Whether a browser's ``Origin`` names this server as the request reached it."""
    parts = urlsplit(origin)
    if parts.scheme != scheme or not parts.hostname:
        return False  # "null" (a sandboxed frame, a file:// page) included
    default = "443" if scheme == "https" else "80"
    name, port = split_host(host_header)
    return parts.hostname.lower() == name.lower() and str(parts.port or default) == (
        port or default
    )


def bearer(headers: dict[bytes, bytes], query: bytes) -> str | None:
    """The token a request carries: ``Authorization: Bearer ...``, else ``?token=``."""
    scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    given = parse_qs(query.decode("latin-1")).get("token")
    return given[0] if given else None


class AccessGuard:
    """ASGI middleware applying ``Access`` to every HTTP request (see the module docstring)."""

    def __init__(self, app: Any, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                status, error, extra = refusal
                response = JSONResponse(error.to_dict(), status_code=status, headers=extra)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Any) -> tuple[int, TtsError, dict[str, str]] | None:
        """Why this request may not go on (status, error, headers), or None."""
        headers = dict(scope.get("headers") or [])
        host_header = headers.get(b"host", b"").decode("latin-1")
        name, _ = split_host(host_header)
        if not self.access.host_allowed(name):
            return (
                403,
                TtsError(
                    "forbidden_host",
                    f"this server answers only to a loopback name, not Host {host_header!r}",
                    "Open the page as http://127.0.0.1:PORT/ or http://localhost:PORT/.",
                ),
                {},
            )
        origin = headers.get(b"origin")
        api = scope.get("path", "").startswith(API_PREFIX)
        if (
            origin is not None
            and not same_origin(origin.decode("latin-1"), host_header, scope.get("scheme", "http"))
        ) or (api and headers.get(b"sec-fetch-site") in CROSS_SITE):
            shown = origin.decode("latin-1") if origin is not None else "another site"
            return (
                403,
                TtsError(
                    "forbidden_origin",
                    f"requests from {shown!r} are refused: only this server's own page may call it",
                    "Use the settings page this server serves, or call the API from outside a "
                    "browser.",
                ),
                {},
            )
        if api and not self.access.token_matches(bearer(headers, scope.get("query_string", b""))):
            return (
                401,
                TtsError(
                    "unauthorized",
                    "this server needs its token on every /api route",
                    "Send 'Authorization: Bearer <token>' or '?token=<token>': the token the "
                    f"server printed when it started, or ${TOKEN_ENV}.",
                ),
                {"WWW-Authenticate": "Bearer"},
            )
        return None
