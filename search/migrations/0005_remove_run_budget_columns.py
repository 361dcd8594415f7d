"""One run request per run, step 3 of 3 (schema): the columns it replaced go."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("search", "0004_run_request_data")]

    operations = [
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
    ]
