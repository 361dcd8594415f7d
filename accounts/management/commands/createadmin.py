"""Create the first administrator (a superuser) and put them in a team.

    manage.py createadmin alice --email alice@example.com --team compilers

The password comes from COLT_ADMIN_PASSWORD, or is asked for twice on a terminal; it is
never a command-line argument (those end up in shell histories and process lists).

    manage.py createadmin admin --if-none --password-file .colt-admin-password

is what ``scripts/run`` does on a fresh machine: only if no administrator exists yet, it
creates one with a generated password written to that file (mode 0600), never to the console.
"""

import getpass
import os
import secrets
import sys
from pathlib import Path

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
        parser.add_argument("--if-none", action="store_true", help="do nothing if a superuser already exists")
        parser.add_argument(
            "--password-file", default=None, help="generate the password and write it to this file (mode 0600)"
        )

    def handle(self, *args, username, email, team, if_none, password_file, **options):
        User = get_user_model()
        if if_none and User.objects.filter(is_superuser=True).exists():
            return
        try:  # the same rules as Django's own forms: letters, digits and @/./+/-/_ only
            User._meta.get_field("username").run_validators(username)
        except ValidationError as exc:
            raise CommandError(f"username rejected: {' '.join(exc.messages)}", returncode=2) from None
        if User.objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} already exists")
        if password_file:
            password = secrets.token_urlsafe(18)
        else:
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
            if password_file:
                path = Path(password_file)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(password + "\n")
        where = f"; its password is in {password_file}" if password_file else ""
        self.stdout.write(f"created administrator {username!r} in team {team!r}{where}; log in at /accounts/login/")

    def _ask_password(self) -> str:
        if not sys.stdin.isatty():
            raise CommandError("set COLT_ADMIN_PASSWORD (no terminal to ask for a password on)")
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("the passwords do not match")
        return first
