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
    # the run page builds its tree from the stored node_created events: they get the same origin
    Event = apps.get_model("search", "Event")
    known = Node.objects.filter(origin__isnull=False).values_list("run_id", "node_id", "origin")
    origins = {(run_id, node_id): origin for run_id, node_id, origin in known.iterator()}
    changed = []
    for event in Event.objects.filter(kind="node_created").iterator():
        origin = origins.get((event.run_id, event.data.get("node_id")))
        if origin is not None and "origin" not in event.data:
            event.data["origin"] = origin
            changed.append(event)
    Event.objects.bulk_update(changed, ["data"], batch_size=500)


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
