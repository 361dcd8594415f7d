"""One run request per run (budget, settings, timing and fleet in ``Run.request``; kernel,
target and strategy stay columns), and None instead of "" in the optional text of nodes and LLM calls."""

from dataclasses import asdict

from django.db import migrations, models


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
    dependencies = [("search", "0002_run_team")]

    operations = [
        migrations.AddField(model_name="run", name="request", field=models.JSONField(default=dict)),
        # a default for the way back: the column is added again to a table that has rows
        migrations.AlterField(model_name="run", name="trials_budget", field=models.PositiveIntegerField(default=64)),
        migrations.RunPython(to_request, from_request),
        *[
            migrations.RemoveField(model_name="run", name=name)
            for name in (
                "fleet",
                "model",
                "settings",
                "timing",
                "trials_budget",
                "llm_calls_budget",
                "usd_budget",
                "wall_s_budget",
            )
        ],
        migrations.AlterField(
            model_name="node", name="created_by", field=models.CharField(blank=True, max_length=64, null=True)
        ),
        migrations.AlterField(
            model_name="node", name="expand_model", field=models.CharField(blank=True, max_length=64, null=True)
        ),
        migrations.AlterField(
            model_name="node", name="status", field=models.CharField(blank=True, max_length=16, null=True)
        ),
        migrations.AlterField(
            model_name="llmcall", name="next_model", field=models.CharField(blank=True, max_length=64, null=True)
        ),
        migrations.RunPython(blanks_to_null, null_to_blanks),
    ]
