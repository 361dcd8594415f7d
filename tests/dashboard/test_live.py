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


def ws_headers(user):
    return [(b"origin", b"http://localhost"), (b"cookie", session_cookie(user))]


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
        connected, code = await ws.connect()
        assert not connected and code == 4404

    async_to_sync(scenario)()


def test_websocket_needs_a_login_and_hides_other_teams_runs(run, outsider, redis_layer):
    """An outsider's socket is closed exactly as for a run that does not exist (4404);
    without a session it is closed with 4401."""
    from colt_site.asgi import application

    async def close_code(headers):
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        connected, code = await ws.connect()
        assert not connected
        return code

    assert async_to_sync(close_code)(ws_headers(outsider)) == 4404
    assert async_to_sync(close_code)([(b"origin", b"http://localhost")]) == 4401
