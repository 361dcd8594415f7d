from django.db import migrations, models

#: the origins an earlier row's fields still tell (engine.events.ORIGINS); a tree child of the
#: prior's mutator and refine's mutant look alike, and stay None (unknown)
MARKERS = {"Warm seed": "warm", "Sketch scout": "scout", "Random sample": "random"}


def fill_known_origins(apps, schema_editor):
    Node = apps.get_model("search", "Node")
    old = Node.objects.filter(origin__isnull=True)
    old.filter(run__strategy="evolutionary").update(origin="evolution")
    for label, origin in MARKERS.items():
        old.filter(parent_id=0, mutators=[label]).update(origin=origin)
    old.filter(parent_id=0, mutators=[]).update(origin="sample")
    old.filter(created_by__isnull=False).exclude(created_by="").update(origin="llm")


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0009_measurement_coarse"),
    ]

    operations = [
        migrations.AddField(
            model_name="node",
            name="origin",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.RunPython(fill_known_origins, migrations.RunPython.noop),
    ]
