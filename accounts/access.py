"""Teams and their members. Which runs a user may see is a selector of the search app
(search.selectors.visible_runs); accounts knows nothing of runs."""

from __future__ import annotations

from .models import Team


def teams_of(user):
    """The teams whose runs ``user`` sees (all of them for a superuser)."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(members=user)


def ensure_team(name: str) -> Team:
    team, _ = Team.objects.get_or_create(name=name)
    return team


def add_member(team: Team, user) -> None:
    team.members.add(user)
