"""``manage.py serve_models``: one llama.cpp server per local model on 127.0.0.1, until Ctrl-C."""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from search.localfleet import LOCAL_MODELS, LocalFleetError, serve, stop


class Command(BaseCommand):
    help = "Serve the local LLM fleet (OpenAI-compatible, 127.0.0.1) until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("models", nargs="*", help=f"default: all of {', '.join(m.name for m in LOCAL_MODELS)}")

    def handle(self, *args, **opts):
        try:
            servers = serve(opts["models"] or None, log=self.stdout.write)
        except LocalFleetError as exc:
            raise CommandError(str(exc), returncode=2) from None
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        self.stdout.write("serving; Ctrl-C (or SIGTERM) stops the servers")
        try:
            done.wait()
        finally:
            stop(servers)
            self.stdout.write("stopped")
