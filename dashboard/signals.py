"""Tell a user's open run pages to check their access again: after a team membership change
(either side of the relation) and after a logout. The consumer re-checks and disconnects a
user who may no longer see the run (dashboard/consumers.py)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from accounts.models import Membership, Team

from .consumers import user_group

log = logging.getLogger(__name__)


def notify(user_ids) -> None:
    """After the transaction commits (the consumer must see the change)."""

    def send():
        layer = get_channel_layer()
        if layer is None:
            return
        for user_id in set(user_ids):
            try:
                async_to_sync(layer.group_send)(user_group(user_id), {"type": "access.changed"})
            except Exception as exc:  # noqa: BLE001 - the periodic re-check still applies
                log.warning("could not notify user %s's pages of an access change: %s", user_id, exc)

    transaction.on_commit(send)


def on_membership_change(sender, instance, action, reverse, model, pk_set, **kwargs):
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if isinstance(instance, Team):  # team.members.add/remove(users): pk_set holds user ids
        users = pk_set if action != "pre_clear" else list(instance.members.values_list("pk", flat=True))
    else:  # user.teams.add/remove(teams): the instance is the user
        users = [instance.pk]
    notify(users or [])


def on_membership_row(sender, instance, **kwargs):
    """A Membership row made or deleted directly (the admin's inline, a data fix)."""
    notify([instance.user_id])


def on_logout(sender, request, user, **kwargs):
    if user is not None:
        notify([user.pk])


def connect() -> None:
    m2m_changed.connect(on_membership_change, sender=Team.members.through, dispatch_uid="colt-access-members")
    post_save.connect(on_membership_row, sender=Membership, dispatch_uid="colt-access-row-saved")
    post_delete.connect(on_membership_row, sender=Membership, dispatch_uid="colt-access-row-deleted")
    user_logged_out.connect(on_logout, sender=get_user_model(), dispatch_uid="colt-access-logout")
