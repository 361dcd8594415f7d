"""One run request per run, step 2 of 3 (data): budget, settings, timing and the fleet move
into ``Run.request`` (a single-llm run keeps the one model it ran), and "" becomes None in the
optional text of nodes and LLM calls. Each step reverses."""

from dataclasses import asdict

from django.db import migrations


def to_request(apps, schema_editor):
    from search.engine.measure import MeasureConfig

    Run = apps.get_model("search", "Run")
    for run in Run.objects.all().iterator():
        fleet = list(run.fleet or [])
        if run.strategy == "single-llm" and run.model:
            fleet = [m for m in fleet if m.get("name") == run.model] or fleet[:1]
        run.request = {
            "budget": {
                "trials": run.trials_budget,
                "llm_calls": run.llm_calls_budget,
                "usd": run.usd_budget,
                "wall_s": run.wall_s_budget,
            },
            "settings": dict(run.settings or {}),
            "timing": dict(asdict(MeasureConfig()), **(run.timing or {})),
            "fleet": fleet,
        }
        run.save(update_fields=["request"])


def from_request(apps, schema_editor):
    Run = apps.get_model("search", "Run")
    for run in Run.objects.all().iterator():
        budget = run.request.get("budget", {})
        run.trials_budget = budget.get("trials", 64)
        run.llm_calls_budget = budget.get("llm_calls")
        run.usd_budget = budget.get("usd")
        run.wall_s_budget = budget.get("wall_s")
        run.settings = run.request.get("settings", {})
        run.timing = run.request.get("timing", {})
        run.fleet = run.request.get("fleet", [])
        run.model = run.fleet[0]["name"] if run.strategy == "single-llm" and run.fleet else ""
        run.save()


OPTIONAL_TEXT = {"Node": ("created_by", "expand_model", "status"), "LLMCall": ("next_model",)}


def blanks_to_null(apps, schema_editor):
    for model, names in OPTIONAL_TEXT.items():
        rows = apps.get_model("search", model).objects
        for name in names:
            rows.filter(**{name: ""}).update(**{name: None})


def null_to_blanks(apps, schema_editor):
    for model, names in OPTIONAL_TEXT.items():
        rows = apps.get_model("search", model).objects
        for name in names:
            rows.filter(**{f"{name}__isnull": True}).update(**{name: ""})


class Migration(migrations.Migration):
    dependencies = [("search", "0003_run_request_node_nulls")]

    operations = [
        migrations.RunPython(to_request, from_request),
        migrations.RunPython(blanks_to_null, null_to_blanks),
    ]
