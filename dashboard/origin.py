"""The websocket handshake's origin check: the full ``scheme://host:port`` of the page must be
the server's own (the Host the browser connected to, itself in ALLOWED_HOSTS, with the scheme
the browser used) or one of CSRF_TRUSTED_ORIGINS. Channels' AllowedHostsOriginValidator compares
host names only, so any port or plain http on the real host passed; this compares all three."""

from __future__ import annotations

from django.conf import settings
from django.http.request import split_domain_port, validate_host


def page_scheme(scope) -> str:
    """http or https: the scheme the browser used (wss, or a TLS proxy that says so)."""
    if scope.get("scheme") == "wss":
        return "https"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name = proxy[0].removeprefix("HTTP_").lower().replace("_", "-").encode()
        for key, value in scope.get("headers", []):
            if key == name and value.decode("latin1").strip().lower() == proxy[1]:
                return "https"
    return "http"


def allowed(scope) -> bool:
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin1").strip().lower()
    host = headers.get(b"host", b"").decode("latin1").strip().lower()
    if not origin or not host:
        return False
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    trusted = {o.strip().lower().rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}
    return origin == f"{page_scheme(scope)}://{host}" or origin in trusted


class SameOriginValidator:
    """ASGI middleware: a websocket from any other origin is refused at the handshake (HTTP 403)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not allowed(scope):
            await send({"type": "websocket.close", "code": 4403})  # before accept: the handshake is refused
            return None
        return await self.app(scope, receive, send)
