"""ASGI entry point (Daphne): HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "colt_site.settings")
django_asgi = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

if settings.COLT_NO_SECRET_KEY:  # production mode (the default) serves nothing without a real key
    raise ImproperlyConfigured(
        "COLT_SECRET_KEY is not set: production mode (the default) will not serve pages with a throwaway key. "
        "Set COLT_SECRET_KEY, or start development mode explicitly (scripts/run, or COLT_DEBUG=1)."
    )

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from dashboard.origin import SameOriginValidator  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402

# Static files straight from static/ (no collectstatic) in the embedded default; in production
# (COLT_DEBUG=0) WhiteNoise serves the collected, compressed, hashed files (settings.py).
http_app = ASGIStaticFilesHandler(django_asgi) if settings.DEBUG else django_asgi

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
