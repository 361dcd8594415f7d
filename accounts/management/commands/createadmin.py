"""Create the first administrator (a superuser) and put them in a team.

    manage.py createadmin alice --email alice@example.com --team compilers

The password comes from COLT_ADMIN_PASSWORD, or is asked for twice on a terminal; it is
never a command-line argument (those end up in shell histories and process lists).
"""

import getpass
import os
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.access import add_member, ensure_team


class Command(BaseCommand):
    help = "Create an administrator (superuser) and add them to a team (default: 'default')."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--team", default="default", help="team to join (created if missing)")

    def handle(self, *args, username, email, team, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} already exists")
        password = os.environ.get("COLT_ADMIN_PASSWORD") or self._ask_password()
        user = User(username=username, email=email, is_staff=True, is_superuser=True)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("password rejected: " + " ".join(exc.messages)) from None
        with transaction.atomic():
            user.set_password(password)
            user.save()
            add_member(ensure_team(team), user)
        self.stdout.write(f"created administrator {username!r} in team {team!r}; log in at /accounts/login/")

    def _ask_password(self) -> str:
        if not sys.stdin.isatty():
            raise CommandError("set COLT_ADMIN_PASSWORD (no terminal to ask for a password on)")
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("the passwords do not match")
        return first
