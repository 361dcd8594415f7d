"""The worker side: a thin Celery task, and the dispatcher that picks Celery or in-process.

``run_search(run_id)`` loads nothing itself: it calls :func:`search.services.execute_run`.
It is acknowledged late and rejected when its worker is lost, so a worker killed mid-run has
the message redelivered to the next worker on the queue, which resumes the run from the
database. A database that is briefly unavailable makes the task retry with back-off.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from colt_site.celery import app

log = logging.getLogger(__name__)


class RunSearchTask(app.Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Out of retries (or an error no retry helps): the run says so instead of staying
        queued with no message left in the queue. ``resume`` puts it back."""
        from .services import mark_run_failed

        if args:
            try:
                mark_run_failed(int(args[0]), f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the database may still be away; the run stays resumable
                log.exception("could not mark run %s failed", args[0])


@app.task(
    name="search.tasks.run_search",
    base=RunSearchTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def run_search(self, run_id: int) -> None:
    from .services import STALE_AFTER_S, RunBusy, execute_run

    close_old_connections()
    try:
        # this process's identity: a retry of its own run (after a database outage) takes it
        # over at once; another process waits for the run's heartbeat to go stale
        worker = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
        execute_run(run_id, worker=worker)
    except RunBusy as exc:
        # a redelivered message while the run looks alive: look again once it could be stale
        # (its worker died) and take over then; if it finishes meanwhile, the retry does nothing
        raise self.retry(exc=exc, countdown=max(1.0, STALE_AFTER_S), max_retries=None) from None


@app.task(
    name="search.tasks.run_model",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def run_model(self, model_run_id: int) -> None:
    """A model run: its tasks one after another, then the end-to-end build (search/modelruns.py)."""
    from .modelruns import execute_model_run

    close_old_connections()
    execute_model_run(model_run_id, worker=f"{self.request.hostname or socket.gethostname()}:{os.getpid()}")


@worker_ready.connect
def _start_watchdog(**kwargs) -> None:
    """Every worker watches for runs nobody would otherwise finish (search/watchdog.py)."""
    if settings.REDIS_URL:
        from .watchdog import start

        start(settings.REDIS_URL)


# --- the embedded default: no Redis, an in-process executor ------------------------------------

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


#: the in-process executor's retries when the database is briefly away (seconds between)
IN_PROCESS_RETRY_DELAYS = (1, 2, 4, 8, 16, 32)


def _in_process(run_id: int) -> None:
    import time

    from .services import execute_run, mark_run_failed

    try:
        for delay in (*IN_PROCESS_RETRY_DELAYS, None):
            try:
                execute_run(run_id)
                return
            except (OperationalError, InterfaceError) as exc:
                if delay is None:
                    mark_run_failed(run_id, str(exc))
                    raise
                connection.close()
                time.sleep(delay)
    except Exception:  # noqa: BLE001 - the run is marked failed; keep the executor alive
        log.exception("run %s failed", run_id)
    finally:
        connection.close()  # this thread's connection


def dispatch(run_id: int, target: str) -> None:
    """Celery queue named for the target when Redis is configured; otherwise in this process,
    one run at a time."""
    global _executor
    if settings.REDIS_URL:
        with app.connection_for_write(settings.REDIS_URL) as conn:
            run_search.apply_async(args=[run_id], queue=target, connection=conn)
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colt-run")
    _executor.submit(_in_process, run_id)


def _model_in_process(model_run_id: int) -> None:
    from .modelruns import execute_model_run

    try:
        execute_model_run(model_run_id)
    except Exception:  # noqa: BLE001 - the model run is marked failed; keep the executor alive
        log.exception("model run %s failed", model_run_id)
    finally:
        connection.close()


def dispatch_model(model_run_id: int, target: str) -> None:
    """Like :func:`dispatch`, for a model run (the same queue, the same one-at-a-time executor)."""
    global _executor
    if settings.REDIS_URL:
        with app.connection_for_write(settings.REDIS_URL) as conn:
            run_model.apply_async(args=[model_run_id], queue=target, connection=conn)
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colt-run")
    _executor.submit(_model_in_process, model_run_id)
