"""The live path: events API with ``?after=<seq>``, and the run consumer over the real Redis
channel layer, including a reconnect that resyncs from a sequence number with no event lost."""

import os

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection

from search import services
from search.engine import events as ev
from search.engine.request import Budget
from search.persistence import DatabaseSink
from tests.conftest import session_cookie
from tests.helpers import create_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db]
REDIS_LAYER_URL = os.environ.get("COLT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def run(gemm128, team, monkeypatch):
    monkeypatch.setattr(services, "enqueue_run", lambda *a: None)
    return create_run(spec=gemm128, budget=Budget(trials=4), team=team)


SAME_ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


def ws_headers(user):
    return [*SAME_ORIGIN, (b"cookie", session_cookie(user))]


async def close_code_after_accept(ws) -> int:
    """The code a refused socket is closed with: accepted first, so a browser can read it."""
    connected, _ = await ws.connect()
    assert connected
    message = await ws.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return message["code"]


def progress(i):
    return ev.Progress(trials=i, trials_budget=4, expansions=i, nodes=i, best_latency_s=None, elapsed_s=float(i))


def test_events_api_pages_by_sequence_number(client, run):
    sink = DatabaseSink(run)
    for i in range(5):
        sink.emit(progress(i))
    data = client.get(f"/api/runs/{run.pk}?after=2").json()
    assert [e["seq"] for e in data["events"]] == [3, 4, 5]
    assert data["events"][0]["kind"] == "progress" and data["events"][0]["trials"] == 2
    assert data["run"]["last_seq"] == 5 and data["run"]["status"] == "queued"
    assert client.get(f"/api/runs/{run.pk}?after=x").status_code == 400
    assert client.get("/api/runs/999999").status_code == 404


@pytest.fixture
def redis_layer(settings):
    import redis

    try:
        redis.Redis.from_url(REDIS_LAYER_URL, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001
        if os.environ.get("COLT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but not reachable at {REDIS_LAYER_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_LAYER_URL}")
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_LAYER_URL]}}
    }
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    yield layer


def test_consumer_streams_live_events_and_resyncs_after_a_reconnect(run, member, redis_layer):
    from colt_site.asgi import application

    sink = DatabaseSink(run)

    def emit_and_close(i):  # as a worker would: its own thread and connection
        try:
            sink.emit(progress(i))
        finally:
            connection.close()

    emit = sync_to_async(emit_and_close, thread_sensitive=False)
    headers = ws_headers(member)

    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        connected, _ = await ws.connect()
        assert connected
        hello = await ws.receive_json_from()
        assert hello == {"type": "hello", "run": run.pk, "last_seq": 0}
        for i in range(3):
            await emit(i)
        seen = [(await ws.receive_json_from(timeout=5))["event"]["seq"] for _ in range(3)]
        assert seen == [1, 2, 3]
        await ws.disconnect()
        for i in range(3, 6):  # while the page is away (a dropped connection, a Redis restart)
            await emit(i)
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        assert (await ws.connect())[0]
        hello = await ws.receive_json_from()
        assert hello["last_seq"] == 6
        await ws.send_json_to({"after": seen[-1]})
        missed = await ws.receive_json_from(timeout=5)
        assert missed["type"] == "events" and [e["seq"] for e in missed["events"]] == [4, 5, 6]
        await emit(6)
        live = await ws.receive_json_from(timeout=5)
        assert live["event"]["seq"] == 7 and live["event"]["trials"] == 6
        await ws.send_json_to({"after": "x"})
        assert (await ws.receive_json_from())["type"] == "error"
        await ws.disconnect()

    async_to_sync(scenario)()


def test_consumer_refuses_an_unknown_run(member, redis_layer):
    from colt_site.asgi import application

    headers = ws_headers(member)

    async def scenario():
        ws = WebsocketCommunicator(application, "/ws/runs/999999/", headers=headers)
        assert await close_code_after_accept(ws) == 4404

    async_to_sync(scenario)()


def test_websocket_needs_a_login_and_hides_other_teams_runs(run, outsider, redis_layer):
    """An outsider's socket is closed exactly as for a run that does not exist (4404);
    without a session it is closed with 4401."""
    from colt_site.asgi import application

    async def close_code(headers):
        return await close_code_after_accept(WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers))

    assert async_to_sync(close_code)(ws_headers(outsider)) == 4404
    assert async_to_sync(close_code)(SAME_ORIGIN) == 4401


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "ok"),
    [
        ("http://localhost", "localhost", "ws", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),
        ("https://localhost", "localhost", "wss", True),
        ("http://127.0.0.1:4444", "127.0.0.1:8000", "ws", False),  # another port on the real host
        ("http://localhost", "localhost", "wss", False),  # plain http page, TLS socket
        ("https://localhost", "localhost", "ws", False),
        ("http://evil.example", "localhost", "ws", False),
        ("http://evil.example", "evil.example", "ws", False),  # a host not in ALLOWED_HOSTS
        ("", "localhost", "ws", False),
        ("null", "localhost", "ws", False),
    ],
)
def test_the_origin_must_be_the_servers_own_scheme_host_and_port(origin, host, scheme, ok):
    from dashboard.origin import allowed

    scope = {"type": "websocket", "scheme": scheme, "headers": [(b"origin", origin.encode()), (b"host", host.encode())]}
    assert allowed(scope) is ok


def test_a_trusted_origin_and_a_tls_proxy_are_honoured(settings):
    from dashboard.origin import allowed

    settings.CSRF_TRUSTED_ORIGINS = ["https://colt.example.org"]
    settings.ALLOWED_HOSTS = ["colt.example.org", "localhost"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [(b"origin", b"https://localhost"), (b"host", b"localhost"), (b"x-forwarded-proto", b"https")]
    assert allowed({"scheme": "ws", "headers": proxied})
    trusted = [(b"origin", b"https://colt.example.org"), (b"host", b"localhost")]
    assert allowed({"scheme": "ws", "headers": trusted})


def test_a_socket_from_another_origin_is_refused_at_the_handshake(run, member, redis_layer):
    from colt_site.asgi import application

    headers = [(b"origin", b"http://localhost:4444"), (b"host", b"localhost"), (b"cookie", session_cookie(member))]

    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        connected, _ = await ws.connect()
        assert not connected

    async_to_sync(scenario)()


def test_frames_that_are_not_json_get_errors_then_a_clean_close(run, member, redis_layer, caplog):
    from colt_site.asgi import application

    headers = ws_headers(member)

    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        assert (await ws.connect())[0]
        await ws.receive_json_from()  # hello
        for frame in ("not json", '{"after": 99999999999999999999999}'):
            await ws.send_to(text_data=frame)
            assert (await ws.receive_json_from())["type"] == "error"
        await ws.send_to(text_data="{")
        message = await ws.receive_output(timeout=5)
        assert message == {"type": "websocket.close", "code": 4400}

    async_to_sync(scenario)()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_a_member_removed_from_the_team_is_disconnected_at_once(run, member, team, redis_layer):
    from colt_site.asgi import application

    headers = ws_headers(member)

    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        assert (await ws.connect())[0]
        await ws.receive_json_from()  # hello
        await sync_to_async(team.members.remove)(member)
        message = await ws.receive_output(timeout=5)
        assert message == {"type": "websocket.close", "code": 4404}

    async_to_sync(scenario)()


def test_a_logged_out_session_is_disconnected(run, member, redis_layer):
    from django.contrib.sessions.backends.db import SessionStore

    from colt_site.asgi import application
    from dashboard.signals import notify

    cookie = session_cookie(member)
    key = cookie.decode().split("=", 1)[1]

    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=[*SAME_ORIGIN, (b"cookie", cookie)])
        assert (await ws.connect())[0]
        await ws.receive_json_from()  # hello
        await sync_to_async(SessionStore(key).delete)()  # what logout does to the session
        await sync_to_async(notify)([member.pk])  # what the user_logged_out signal sends
        message = await ws.receive_output(timeout=5)
        assert message == {"type": "websocket.close", "code": 4401}

    async_to_sync(scenario)()
