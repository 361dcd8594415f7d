"""HTTP views: thin; they fetch by id (through the access rules), call a selector, a report or a
service, return. Every view needs a login (accounts.middleware) except the health check and the
login page; a run the user may not see answers 404."""

import json

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.access import teams_of
from colt_site.converters import parse_id
from search import exports, modelruns, reports, selectors, services
from search.engine.events import ORIGINS
from search.engine.onnxmodel import ModelError
from search.engine.request import RequestError
from search.models import Run
from search.selectors import run_for, visible_runs

from .forms import CostFilterForm, LaunchForm


def error_page(request, message: str, *, status: int = 400, title: str = "That did not work", back: str = ""):
    """A styled error page (with the site's header), not a bare text response."""
    return render(request, "error.html", {"title": title, "message": message, "back": back}, status=status)


@login_not_required
def healthz(request):
    return JsonResponse({"ok": True})


def run_list(request):
    runs = visible_runs(request.user).select_related("kernel", "owner", "team").order_by("-created_at", "-pk")
    page = Paginator(runs, 20).get_page(request.GET.get("page"))
    shares = selectors.largest_shares(list(page.object_list))
    rows = [(run, shares.get(run.pk)) for run in page.object_list]
    return render(request, "dashboard/run_list.html", {"page": page, "rows": rows})


def launch(request):
    fleet = services.configured_fleet()
    form_kwargs = dict(targets=services.available_targets(), fleet=fleet, teams=teams_of(request.user))
    if request.method == "POST":
        form = LaunchForm(request.POST, request.FILES, **form_kwargs)
        if form.is_valid() and form.is_model:
            data = form.cleaned_data
            try:
                model_run = modelruns.create_model_run(
                    data["onnx"],
                    data["model_doc"],
                    name=data["onnx_file"].name.rsplit(".", 1)[0],
                    input_shapes=data["shapes"] or None,
                    owner=request.user,
                    team=data["team"],
                    offered_fleet=fleet,
                )
            except (ModelError, RequestError) as exc:
                form.model_errors(exc)
            else:
                return redirect("model-page", model_run_id=model_run.pk)
        elif form.is_valid():
            run = services.create_run(
                form.request,
                owner=request.user,
                team=form.cleaned_data["team"],
                remeasure_baseline=form.cleaned_data.get("remeasure_baseline", False),
            )
            return redirect("run-page", run_id=run.pk)
    else:
        form = LaunchForm(**form_kwargs)
    return render(request, "dashboard/launch.html", {"form": form, "fleet": fleet})


def run_page(request, run_id: int):
    run = run_for(request.user, run_id, Run.objects.select_related("kernel", "team", "model_run"))
    return render(request, "dashboard/run.html", {"run": run, "origins": ORIGINS})


# --- model runs ------------------------------------------------------------------------------


def model_list(request):
    model_runs = selectors.visible_model_runs(request.user).select_related("owner", "team").order_by("-created_at")
    page = Paginator(model_runs.defer("onnx"), 20).get_page(request.GET.get("page"))
    return render(request, "dashboard/model_list.html", {"page": page})


def model_page(request, model_run_id: int):
    model_run = selectors.model_run_for(request.user, model_run_id)
    return render(request, "dashboard/model.html", {"model_run": model_run, "overview": modelruns.overview(model_run)})


@require_GET
def model_api(request, model_run_id: int):
    """The model page's live figures (it polls this): status, phase, tasks, budgets, estimate."""
    model_run = selectors.model_run_for(request.user, model_run_id)
    return JsonResponse(modelruns.overview(model_run))


@require_POST
def model_cancel(request, model_run_id: int):
    selectors.model_run_for(request.user, model_run_id)
    modelruns.cancel_model_run(model_run_id)
    return redirect("model-page", model_run_id=model_run_id)


@require_POST
def model_resume(request, model_run_id: int):
    selectors.model_run_for(request.user, model_run_id)
    try:
        modelruns.resume_model_run(model_run_id)
    except modelruns.ModelRunStateError as exc:
        return error_page(request, str(exc), title="The model run cannot be resumed", back=f"/models/{model_run_id}")
    return redirect("model-page", model_run_id=model_run_id)


MODEL_DOWNLOADS = {
    "so": ("application/octet-stream", "model.so", modelruns.library_bytes),
    "zip": ("application/zip", "artifacts.zip", modelruns.artifact_zip),
    "onnx": ("application/octet-stream", "model.onnx", lambda m: bytes(m.onnx)),
}


async def model_download(request, model_run_id: int, what: str):
    """The compiled library, the artifacts (database, library, schedules, README) or the ONNX
    file; built in a thread (compiling takes seconds)."""
    return await sync_to_async(_model_download, thread_sensitive=False)(request, model_run_id, what)


def _model_download(request, model_run_id: int, what: str):
    try:
        if what not in MODEL_DOWNLOADS:
            raise Http404("no such download")
        model_run = selectors.model_run_for(request.user, model_run_id)
        if what != "onnx" and not modelruns.has_tuned_tasks(model_run):
            return error_page(
                request,
                "no task of this model has a measured schedule yet",
                title="Nothing to download yet",
                back=f"/models/{model_run_id}",
            )
        content_type, filename, build = MODEL_DOWNLOADS[what]
        response = HttpResponse(build(model_run), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="colt-model{model_run.pk}-{model_run.name}-{filename}"'
        return response
    finally:
        connection.close()


@require_POST
def run_cancel(request, run_id: int):
    run_for(request.user, run_id)
    services.cancel_run(run_id)
    return redirect("run-page", run_id=run_id)


@require_POST
def run_resume(request, run_id: int):
    run_for(request.user, run_id)
    try:
        services.resume_run(run_id)
    except services.RunStateError as exc:
        return error_page(request, str(exc), title="The run cannot be resumed", back=f"/runs/{run_id}")
    return redirect("run-page", run_id=run_id)


@require_POST
def runs_api(request):
    """Launch a run from a JSON run request (the document of search.engine.request, plus
    ``team``): 201 with the run's header, or 400 with ``errors`` per field."""
    try:
        doc = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        return JsonResponse({"errors": {"body": "the body must be a JSON object"}}, status=400)
    try:
        run = services.launch(doc, owner=request.user)
    except RequestError as exc:
        return JsonResponse({"errors": exc.errors}, status=400)
    return JsonResponse({"run": selectors.run_header(run), "url": f"/runs/{run.pk}"}, status=201)


@require_GET
def run_api(request, run_id: int):
    """The run's header (status, budgets, best) and, with ``?after=<seq>``, its events after it."""
    run = run_for(request.user, run_id, Run.objects.select_related("kernel"))
    data = {"run": selectors.run_header(run)}
    if "after" in request.GET:
        after = parse_id(request.GET["after"])
        if after is None:
            return HttpResponseBadRequest("after must be a non-negative integer sequence number")
        data["events"] = selectors.events_after(run.pk, after)
    return JsonResponse(data)


@require_GET
def node_api(request, run_id: int, node_id: int):
    run = run_for(request.user, run_id, Run.objects.select_related("kernel"))
    detail = selectors.node_detail(run, node_id, script=request.GET.get("script") == "1")
    if detail is None:
        raise Http404("no such node")
    subtree = reports.subtree_costs(run).get(node_id, {"usd": 0.0, "calls": 0})
    detail["subtree"] = subtree
    return JsonResponse(detail)


# --- cost review ---------------------------------------------------------------------------------


@require_GET
def run_costs(request, run_id: int):
    run = run_for(request.user, run_id, Run.objects.select_related("kernel", "team"))
    review = reports.model_costs(Run.objects.filter(pk=run.pk))
    return render(
        request,
        "dashboard/costs.html",
        {
            "run": run,
            "review": review,
            "subtrees": reports.costly_subtrees(run),
            "ledger_url": f"/runs/{run.pk}/ledger.csv",
            "runs": None,
        },
    )


def _filtered_runs(request):
    form = CostFilterForm(request.GET or None, teams=teams_of(request.user))
    runs = visible_runs(request.user)
    if form.is_valid():
        runs = form.apply(runs)
    return form, runs


@require_GET
def team_costs(request):
    """Per-model costs across the runs the user sees, filtered by team, kernel, strategy, dates."""
    form, runs = _filtered_runs(request)
    run_rows = list(runs.select_related("kernel", "team").order_by("-created_at", "-pk")[:200])
    shares = selectors.largest_shares(run_rows)
    query = request.GET.urlencode()
    return render(
        request,
        "dashboard/costs.html",
        {
            "run": None,
            "form": form,
            "review": reports.model_costs(runs),
            "runs": [(r, shares.get(r.pk)) for r in run_rows],
            "run_count": runs.count(),
            "ledger_url": "/costs/ledger.csv" + (f"?{query}" if query else ""),
        },
    )


def _csv_response(lines, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
def run_ledger_csv(request, run_id: int):
    run = run_for(request.user, run_id, Run.objects.select_related("kernel"))
    rows = exports.ledger_rows(Run.objects.filter(pk=run.pk))
    return _csv_response(exports.csv_lines(exports.LEDGER_HEADER, rows), f"{exports.base_name(run)}-ledger.csv")


@require_GET
def team_ledger_csv(request):
    form, runs = _filtered_runs(request)
    if form.is_bound and not form.is_valid():
        return HttpResponseBadRequest("bad filter: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
    return _csv_response(exports.csv_lines(exports.LEDGER_HEADER, exports.ledger_rows(runs)), "colt-ledger.csv")


# --- comparisons ---------------------------------------------------------------------------------


@require_GET
def compare(request):
    parsed = [parse_id(x) for x in request.GET.getlist("runs")]
    if None in parsed:
        return error_page(request, "runs must be run ids", title="Cannot compare these runs")
    ids = sorted(set(parsed))
    runs = visible_runs(request.user).filter(pk__in=ids)
    if runs.count() != len(ids):
        raise Http404("no such run")
    try:
        data = reports.compare(runs)
    except reports.CompareError as exc:
        return render(request, "dashboard/compare.html", {"error": str(exc), "data": None}, status=400)
    return render(request, "dashboard/compare.html", {"data": data, "error": None})


# --- downloads -----------------------------------------------------------------------------------

DOWNLOADS = ("schedule.py", "trace.json", "database.zip", "top.json", "nodes.csv")


@require_GET
async def download(request, run_id: int, what: str):
    """Replaying traces (the TVMScript, the database) takes CPU time: it runs in a thread of its
    own, so the other requests of this process (sync views share one thread) go on meanwhile."""
    return await sync_to_async(_download_in_thread, thread_sensitive=False)(request, run_id, what)


def _download_in_thread(request, run_id: int, what: str):
    try:
        response = _download(request, run_id, what)
        if isinstance(response, StreamingHttpResponse):  # consumed later, on another thread
            response.streaming_content = list(response.streaming_content)
        return response
    finally:
        connection.close()  # this thread's own connection


def _download(request, run_id: int, what: str):
    run = run_for(request.user, run_id, Run.objects.select_related("kernel"))
    name = exports.base_name(run)
    if what == "nodes.csv":
        return _csv_response(exports.csv_lines(exports.NODES_HEADER, exports.node_rows(run)), f"{name}-nodes.csv")
    try:
        if what == "schedule.py":
            body, ctype = exports.schedule_script(run), "text/x-python; charset=utf-8"
        elif what == "trace.json":
            body, ctype = exports.json_text(exports.trace_document(run)), "application/json"
        elif what == "top.json":
            k = _positive_int(request.GET.get("k", "10"))
            if k is None:
                return HttpResponseBadRequest("k must be a positive integer")
            body, ctype = exports.json_text(exports.top_records(run, min(k, exports.MAX_RECORDS))), "application/json"
        elif what == "database.zip":
            top = _positive_int(request.GET["top"]) if "top" in request.GET else None
            if "top" in request.GET and top is None:
                return HttpResponseBadRequest("top must be a positive integer")
            body, ctype = exports.database_zip(run, top), "application/zip"
        else:
            raise Http404("no such download")
    except exports.NothingToExport as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    response = HttpResponse(body, content_type=ctype)
    response["Content-Disposition"] = f'attachment; filename="{name}-{what}"'
    return response


def _positive_int(text: str) -> int | None:
    value = parse_id(text)
    return value if value else None
