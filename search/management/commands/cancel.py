"""``manage.py cancel RUN_ID``: stop a run within one iteration (a queued one at once)."""

from django.core.management.base import BaseCommand, CommandError

from search.models import Run
from search.services import cancel_run


class Command(BaseCommand):
    help = "Cancel a run."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, **opts):
        if not Run.objects.filter(pk=opts["run_id"]).exists():
            raise CommandError(f"no run {opts['run_id']}", returncode=2)
        cancel_run(opts["run_id"])
        self.stdout.write(f"run {opts['run_id']}: cancel requested")
