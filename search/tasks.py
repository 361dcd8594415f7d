"""The worker side: a thin Celery task, and the dispatcher that picks Celery or in-process.

``run_search(run_id)`` loads nothing itself: it calls :func:`search.services.execute_run`.
It is acknowledged late and rejected when its worker is lost, so a worker killed mid-run has
the message redelivered to the next worker on the queue, which resumes the run from the
database. A database that is briefly unavailable makes the task retry with back-off.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, close_old_connections

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def run_search(self, run_id: int) -> None:
    from .services import execute_run

    close_old_connections()
    execute_run(run_id, broadcast=_broadcaster())


def _broadcaster():
    from .broadcast import broadcast_event

    return broadcast_event


# --- the embedded default: no Redis, an in-process executor ------------------------------------

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _in_process(run_id: int) -> None:
    from .services import execute_run

    try:
        execute_run(run_id, broadcast=_broadcaster())
    except Exception:  # noqa: BLE001 - the run is marked failed; keep the executor alive
        log.exception("run %s failed", run_id)
    finally:
        close_old_connections()


def dispatch(run_id: int, target: str) -> None:
    """Celery queue named for the target when Redis is configured; otherwise in this process,
    one run at a time."""
    global _executor
    if settings.REDIS_URL:
        from colt_site.celery import app  # noqa: F401 - configures the shared task's app

        run_search.apply_async(args=[run_id], queue=target)
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colt-run")
    _executor.submit(_in_process, run_id)
