import os

# development mode unless a test asks otherwise (scripts/test exports it too): every process the
# tests start (Daphne, Celery workers, the CLI) shares the development key and serves static/
os.environ.setdefault("COLT_DEBUG", "1")

import pytest

from search.engine.measure import MeasureConfig

#: Fast, still real timing for tests: one repeat pair, no minimum duration.
FAST = MeasureConfig(number=1, repeat=2, min_repeat_ms=0, timeout_s=60.0)


@pytest.fixture(scope="session")
def fast_config():
    return FAST


@pytest.fixture(scope="session")
def gemm128():
    from search.engine.workloads import get_kernel

    return get_kernel("gemm-128")


@pytest.fixture(scope="session")
def gemm_space(gemm128):
    from search.engine.compiler import SearchSpace

    return SearchSpace(gemm128, "llvm", seed=0)


@pytest.fixture(scope="session")
def gemm_measurer(gemm128):
    from search.engine.measure import LocalMeasurer

    measurer = LocalMeasurer(gemm128, "llvm", FAST)
    yield measurer
    measurer.close()


@pytest.fixture
def fake_llm():
    """A fake OpenAI-compatible server on 127.0.0.1 answering a fixed joint action for the
    models small, mid and large; LiteLLM reaches it over real HTTP (so can worker processes)."""
    from tests.fakellm import FakeLLMServer, Script

    server = FakeLLMServer()
    for name in ("small", "mid", "large"):
        server.scripts[name] = Script('{"next_model": "small", "mutators": ["MutateTileSize"]}')
    yield server
    server.close()


@pytest.fixture
def fake_fleet(fake_llm):
    from tests.engine.test_policy import fleet_at

    return fleet_at(fake_llm.api_base)


# --- accounts: a team, a member of it, somebody outside it ---------------------------------------

PASSWORD = "colt-test-passphrase-1"


@pytest.fixture
def team(db):
    from accounts.models import Team

    return Team.objects.create(name="lab")


def make_user(username, team=None, **extra):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username, password=PASSWORD, **extra)
    if team is not None:
        team.members.add(user)
    return user


@pytest.fixture
def member(team):
    return make_user("ada", team)


@pytest.fixture
def outsider(db):
    from accounts.models import Team

    return make_user("eve", Team.objects.create(name="elsewhere"))


@pytest.fixture
def client(member):
    """pytest-django's test client, logged in as a member of the team ``lab``."""
    from django.test import Client

    c = Client()
    c.force_login(member)
    return c


def session_cookie(user) -> bytes:
    """A ``Cookie`` header value for a logged-in session of ``user`` (for websocket clients)."""
    from django.conf import settings
    from django.test import Client

    c = Client()
    c.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={c.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
