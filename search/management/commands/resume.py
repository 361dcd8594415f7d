"""``manage.py resume RUN_ID``: put a stopped or orphaned run back in its queue (or, with
--here, go on with it in this process). It continues from the tree in the database."""

from django.core.management.base import BaseCommand, CommandError

from search.models import Run
from search.services import RunStateError, execute_run, resume_run


class Command(BaseCommand):
    help = "Resume a cancelled, failed or orphaned run from its saved tree."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)
        parser.add_argument("--here", action="store_true", help="run it in this process instead of a worker")

    def handle(self, *args, **opts):
        run_id = opts["run_id"]
        if not Run.objects.filter(pk=run_id).exists():
            raise CommandError(f"no run {run_id}", returncode=2)
        try:
            if opts["here"]:
                resume_run(run_id, enqueue=False)
                outcome = execute_run(run_id)
                self.stdout.write(f"run {run_id}: {outcome.status if outcome else 'nothing to do'}")
            else:
                resume_run(run_id)
                self.stdout.write(f"run {run_id} queued again")
        except RunStateError as exc:
            raise CommandError(str(exc), returncode=2) from None
