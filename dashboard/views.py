"""HTTP views: thin; they fetch by id, call a selector or service, return."""

from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from search import selectors, services
from search.models import Run

from .forms import LaunchForm


def healthz(request):
    return JsonResponse({"ok": True})


def run_list(request):
    runs = Run.objects.select_related("kernel", "owner").order_by("-created_at", "-pk")
    page = Paginator(runs, 20).get_page(request.GET.get("page"))
    shares = selectors.largest_shares(list(page.object_list))
    rows = [(run, shares.get(run.pk)) for run in page.object_list]
    return render(request, "dashboard/run_list.html", {"page": page, "rows": rows})


def launch(request):
    fleet = services.configured_fleet()
    form_kwargs = dict(targets=services.available_targets(), fleet=fleet)
    if request.method == "POST":
        form = LaunchForm(request.POST, **form_kwargs)
        if form.is_valid():
            owner = request.user if request.user.is_authenticated else None
            run = services.launch_from_form(form.cleaned_data, fleet=fleet, owner=owner)
            return redirect("run-page", run_id=run.pk)
    else:
        form = LaunchForm(**form_kwargs)
    return render(request, "dashboard/launch.html", {"form": form, "fleet": fleet})


def run_page(request, run_id: int):
    run = get_object_or_404(Run.objects.select_related("kernel"), pk=run_id)
    return render(request, "dashboard/run.html", {"run": run})


@require_POST
def run_cancel(request, run_id: int):
    get_object_or_404(Run, pk=run_id)
    services.cancel_run(run_id)
    return redirect("run-page", run_id=run_id)


@require_POST
def run_resume(request, run_id: int):
    get_object_or_404(Run, pk=run_id)
    try:
        services.resume_run(run_id)
    except services.RunStateError as exc:
        return HttpResponseBadRequest(str(exc))
    return redirect("run-page", run_id=run_id)


@require_GET
def run_api(request, run_id: int):
    """The run's header (status, budgets, best) and, with ``?after=<seq>``, its events after it."""
    run = get_object_or_404(Run.objects.select_related("kernel"), pk=run_id)
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


@require_GET
def node_api(request, run_id: int, node_id: int):
    run = get_object_or_404(Run.objects.select_related("kernel"), pk=run_id)
    detail = selectors.node_detail(run, node_id, script=request.GET.get("script") == "1")
    if detail is None:
        raise Http404("no such node")
    return JsonResponse(detail)
