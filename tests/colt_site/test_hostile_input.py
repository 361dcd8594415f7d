"""Hostile input gets a 4xx and a message, never a 500: numbers a user types go through one
checked path (the run request's limits, the kernel spec, colt_site.converters for ids)."""

import pytest

from search.engine.workloads import KernelSpec, SpecError, validate
from search.models import Run
from tests.helpers import LAUNCH_FORM

pytestmark = [pytest.mark.django_db, pytest.mark.db]

HUGE = "9" * 30


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000, "1e3", " ", "0x10", "-"])
def test_a_dimension_typed_as_any_text_is_a_spec_error(value):
    with pytest.raises(SpecError, match="dimension M must be an integer"):
        validate(KernelSpec("gemm", {"M": value, "N": "8", "K": "8"}))


@pytest.mark.parametrize("shape", ["M=²,N=8,K=8", "M=" + "9" * 5000 + ",N=8,K=8", "M=٣,N=8,K=8"])
def test_the_launch_form_answers_a_bad_shape_with_its_message(client, team, shape):
    form = {**LAUNCH_FORM, "team": team.pk, "kernel": "custom", "op": "gemm", "shape": shape}
    response = client.post("/runs/new", form)
    assert response.status_code == 200 and b"must be an integer" in response.content
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        f"/runs/{HUGE}",
        f"/runs/{HUGE}/costs",
        f"/api/runs/{HUGE}",
        f"/api/runs/1/nodes/{HUGE}",
        f"/runs/{HUGE}/download/trace.json",
    ],
)
def test_an_id_out_of_range_is_not_found(client, url):
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("query", [f"runs={HUGE}&runs=1", "runs=-1", "runs=²", "runs="])
def test_compare_with_ids_that_are_not_ids_is_a_bad_request(client, query):
    assert client.get(f"/compare?{query}").status_code == 400


def test_events_after_a_sequence_out_of_range_is_a_bad_request(client, team, gemm128):
    from tests.helpers import create_run

    run = create_run(spec=gemm128, team=team, enqueue=False)
    assert client.get(f"/api/runs/{run.pk}?after={HUGE}").status_code == 400
    assert client.get(f"/api/runs/{run.pk}?after=-1").status_code == 400
    assert client.get(f"/api/runs/{run.pk}?after=0").status_code == 200


def test_logins_are_throttled_after_repeated_wrong_passwords(member, settings):
    from django.core.management import call_command
    from django.test import Client

    from tests.conftest import PASSWORD, make_user

    c = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert c.post("/accounts/login/", {"username": "ada", "password": "wrong"}).status_code == 200
    assert c.post("/accounts/login/", {"username": "ada", "password": "wrong"}).status_code == 429  # the limit
    locked = c.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    assert locked.status_code == 429  # even the right password, until the cool-off
    make_user("bob")
    assert c.post("/accounts/login/", {"username": "bob", "password": PASSWORD}).status_code == 302  # others not
    call_command("axes_reset", verbosity=0)
    assert Client().post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302
