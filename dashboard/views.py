"""HTTP views: thin; they fetch by id, call a selector or service, return."""

from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.views.decorators.http import require_GET

from search import selectors
from search.models import Run


def healthz(request):
    return JsonResponse({"ok": True})


@require_GET
def run_api(request, run_id: int):
    """The run's header (status, budgets, best) and, with ``?after=<seq>``, its events after it."""
    run = Run.objects.select_related("kernel").filter(pk=run_id).first()
    if run is None:
        raise Http404("no such run")
    data = {"run": selectors.run_header(run)}
    if "after" in request.GET:
        try:
            after = int(request.GET["after"])
        except ValueError:
            return HttpResponseBadRequest("after must be an integer sequence number")
        if after < 0:
            return HttpResponseBadRequest("after must be non-negative")
        data["events"] = selectors.events_after(run.pk, after)
    return JsonResponse(data)
