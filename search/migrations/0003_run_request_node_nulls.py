"""One run request per run, step 1 of 3 (schema): the ``Run.request`` column, and optional
text of nodes and LLM calls that may be None instead of "".

PostgreSQL refuses to alter a table in the transaction that changed rows referencing it
("pending trigger events"), so the data moves in 0004 and the old columns go in 0005."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("search", "0002_run_team")]

    operations = [
        migrations.AddField(model_name="run", name="request", field=models.JSONField(default=dict)),
        # a default for the way back: 0005 adds the column again to a table that has rows
        migrations.AlterField(model_name="run", name="trials_budget", field=models.PositiveIntegerField(default=64)),
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
    ]
