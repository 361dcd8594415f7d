"""Shared by the benchmarks that drive the web app: a Daphne process, a logged-in member."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daphne(env: dict, log=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "colt_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return proc, base
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Daphne did not start") from None
            time.sleep(0.2)


def bench_member(name: str = "bench"):
    """A user in a team of the same name, and a session cookie value for it (Django setup done)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.access import ensure_team

    user, _ = get_user_model().objects.get_or_create(username=name)
    team = ensure_team(name)
    team.members.add(user)
    client = Client()
    client.force_login(user)
    return user, team, client.cookies[settings.SESSION_COOKIE_NAME].value
