"""The watchdog every Celery worker runs: it brings back, by itself, runs that nobody would
otherwise finish, and never runs one run twice.

- A **running run whose heartbeat went stale** (its worker was killed: the message it had
  reserved comes back only after Redis's visibility timeout, an hour) is dispatched again; the
  worker that gets it takes the run over from the database (execute_run refuses a run whose
  heartbeat is fresh, so a live worker is never doubled).
- A **queued run whose message is gone** (Redis restarted without persistence, or a broker that
  lost it) is dispatched again once it has waited ``COLT_QUEUE_LOST_AFTER_S`` with no message for
  it in its queue or reserved by a worker.

Every worker's watchdog looks; a key in Redis (``SET NX`` with the stale time as expiry) lets
one of them dispatch a run once per stale period. The broker's messages are read as data (JSON,
base64 JSON bodies); nothing in them is evaluated.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from datetime import timedelta

log = logging.getLogger(__name__)

WATCHDOG_S = float(os.environ.get("COLT_WATCHDOG_S", "30"))
QUEUE_LOST_AFTER_S = float(os.environ.get("COLT_QUEUE_LOST_AFTER_S", "60"))
TASK_NAME = "search.tasks.run_search"


def _run_id_of(raw) -> int | None:
    """The run id of a run_search task message as Redis holds it (kombu's JSON envelope)."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # the "unacked" hash: [message, exchange, routing key]
            message = message[0]
        if (message.get("headers") or {}).get("task") != TASK_NAME:
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        run_id = args[0]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return run_id if isinstance(run_id, int) and not isinstance(run_id, bool) else None


def runs_with_a_message(client, queues) -> set[int]:
    """Ids of runs that have a task message: waiting in one of ``queues`` or reserved by a worker."""
    ids = set()
    for queue in queues:
        for raw in client.lrange(queue, 0, -1):
            ids.add(_run_id_of(raw))
    for raw in client.hvals("unacked"):
        ids.add(_run_id_of(raw))
    ids.discard(None)
    return ids  # type: ignore[return-value]


def recover(client, *, now=None) -> list[int]:
    """Dispatch again every run that needs it; returns their ids."""
    from django.utils import timezone

    from .models import Run
    from .services import STALE_AFTER_S, enqueue_run

    now = now or timezone.now()
    stale = now - timedelta(seconds=STALE_AFTER_S)
    lost = now - timedelta(seconds=QUEUE_LOST_AFTER_S)
    # a model run's task runs are run by their model run (search/modelruns.py), never alone
    runs = Run.objects.filter(model_run__isnull=True)
    orphaned = list(runs.filter(status=Run.Status.RUNNING, heartbeat_at__lt=stale).values_list("pk", "target"))
    queued = list(
        runs.filter(status=Run.Status.QUEUED, created_at__lt=lost)
        .exclude(heartbeat_at__gte=lost)
        .values_list("pk", "target")
    )
    if queued:
        have = runs_with_a_message(client, sorted({target for _, target in queued}))
        queued = [(pk, target) for pk, target in queued if pk not in have]
    sent = []
    for pk, target in orphaned + queued:
        if client.set(f"colt:watchdog:{pk}", "1", nx=True, ex=max(1, int(STALE_AFTER_S))):
            log.warning("watchdog: run %s has no live worker or message; dispatching it again", pk)
            enqueue_run(pk, target)
            sent.append(pk)
    return sent


def start(redis_url: str) -> threading.Thread:
    """A daemon thread in this worker that looks every WATCHDOG_S seconds."""
    import redis
    from django.db import close_old_connections, connection

    client = redis.Redis.from_url(redis_url, socket_timeout=10)

    def loop():
        while True:
            time.sleep(WATCHDOG_S)
            try:
                close_old_connections()
                recover(client)
            except Exception as exc:  # noqa: BLE001 - Redis or the database away: look again later
                log.warning("watchdog: %s", exc)
            finally:
                connection.close()

    thread = threading.Thread(target=loop, name="colt-watchdog", daemon=True)
    thread.start()
    return thread
