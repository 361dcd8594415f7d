"""Small helpers shared by tests that start other processes (workers, Daphne)."""

import socket

from django.db import connection


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database as a URL, for processes the test starts (they must see its rows)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_until_serving(base: str, proc, log_path, timeout: float = 60.0) -> None:
    """Wait for a started web process to answer ``/healthz``; fail with its log if it dies."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{base} did not start:\n" + open(log_path).read()[-2000:]) from None  # noqa: SIM115 - open for the process's lifetime
            time.sleep(0.2)


#: fast, still real timing for a ``manage.py tune`` in a test
FAST_CLI = ("--number", "1", "--repeat", "2", "--min-repeat-ms", "0")

#: a valid launch form (the fields a user fills in), to post with a team and any changes
LAUNCH_FORM = {
    "kernel": "gemm-128",
    "dtype": "float32",
    "target": "llvm",
    "strategy": "mcts-random",
    "trials": 3,
    "lam": 0.2,
    "c": 1.4,
    "course_alteration_k": 2,
    "branching": 2,
    "seed": 0,
}


def create_run(
    *,
    spec,
    target="llvm",
    strategy="mcts-random",
    budget=None,
    settings=None,
    timing=None,
    fleet=None,
    model=None,
    team=None,
    owner=None,
    enqueue=True,
):
    """A test run: a checked run request saved through the service (the factory of the tests)."""
    from search import services
    from search.engine.measure import MeasureConfig
    from search.engine.request import Budget, RunRequest, SearchSettings

    if model is not None and fleet is not None:
        fleet = fleet.only(model)
    request = RunRequest(
        kernel=spec,
        target=target,
        strategy=strategy,
        budget=budget or Budget(),
        settings=settings
        or SearchSettings.paper(),  # the reference search: quick, and what the persistence tests assume
        timing=timing or MeasureConfig(),
        fleet=fleet,
    )
    return services.create_run(request.checked(), team=team, owner=owner, enqueue=enqueue)
