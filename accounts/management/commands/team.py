"""Teams from the command line (the admin site at /admin/ does the same):

manage.py team create compilers
manage.py team add compilers alice bob
manage.py team remove compilers bob
manage.py team list
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Team


class Command(BaseCommand):
    help = "Create teams and manage their members."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list")
        create = sub.add_parser("create")
        create.add_argument("name")
        for action in ("add", "remove"):
            p = sub.add_parser(action)
            p.add_argument("name")
            p.add_argument("usernames", nargs="+")

    def handle(self, *args, action, **options):
        if action == "list":
            for team in Team.objects.prefetch_related("members"):
                names = ", ".join(sorted(u.username for u in team.members.all())) or "(no members)"
                self.stdout.write(f"{team.name}: {names}")
            return
        name = options["name"]
        if action == "create":
            if Team.objects.filter(name=name).exists():
                raise CommandError(f"team {name!r} already exists")
            Team.objects.create(name=name)
            self.stdout.write(f"created team {name!r}")
            return
        team = Team.objects.filter(name=name).first()
        if team is None:
            raise CommandError(f"no team {name!r} (manage.py team create {name})")
        User = get_user_model()
        users = list(User.objects.filter(username__in=options["usernames"]))
        missing = set(options["usernames"]) - {u.username for u in users}
        if missing:
            raise CommandError(f"no such user(s): {', '.join(sorted(missing))}")
        (team.members.add if action == "add" else team.members.remove)(*users)
        self.stdout.write(
            f"{action}: {', '.join(u.username for u in users)} {'to' if action == 'add' else 'from'} {name!r}"
        )
