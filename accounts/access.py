"""Who may see what. Every page, API endpoint and websocket goes through these: a run that
the user may not see does not exist for them (404), whether or not its id does."""

from __future__ import annotations

from django.http import Http404

from .models import Team


def teams_of(user):
    """The teams whose runs ``user`` sees (all of them for a superuser)."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(members=user)


def visible_runs(user, queryset=None):
    """``queryset`` (default: every run) narrowed to the runs ``user`` may see."""
    from search.models import Run

    qs = Run.objects.all() if queryset is None else queryset
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(team__members=user)


def can_see(user, run_id: int) -> bool:
    return visible_runs(user).filter(pk=run_id).exists()


def run_for(user, run_id: int, queryset=None):
    """The run, if ``user`` may see it; else Http404 (the same answer as a missing id)."""
    run = visible_runs(user, queryset).filter(pk=run_id).first()
    if run is None:
        raise Http404("no such run")
    return run


def ensure_team(name: str) -> Team:
    team, _ = Team.objects.get_or_create(name=name)
    return team


def add_member(team: Team, user) -> None:
    team.members.add(user)
