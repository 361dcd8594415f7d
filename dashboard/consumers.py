"""The run page's websocket: it only notifies; the database is the truth.

On connect the consumer checks the user is logged in and may see the run; if not, it accepts
and at once closes with 4401 (no session) or 4404 (no such run for this user, the same as a
missing run: ids leak nothing), so a browser sees the code. It joins the run's live group
(search.live) and the user's access group, and says which sequence number the run is at. The
client sends ``{"after": <seq>}`` (on connect, and whenever it sees a gap) and gets every stored
event after it, in order; live events then arrive as ``{"type": "event", "event": {...}}``.
A frame that is not such JSON gets an error reply, and closes with 4400 after three.

Access is checked again while the socket is open: when the user's team memberships change or
they log out (dashboard/signals.py sends ``access.changed`` to the user's group), and at least
every ACCESS_RECHECK_S seconds while events flow; a user who may no longer see the run is
disconnected (4404, or 4401 when the session is gone).
"""

from __future__ import annotations

import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.sessions.backends.base import SessionBase

from search import live, selectors

CLOSE_BAD_FRAMES = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
ACCESS_RECHECK_S = 10.0
MAX_BAD_FRAMES = 3
MAX_SEQ = 2**62  # beyond any run's sequence numbers (and any database integer)


def user_group(user_id: int) -> str:
    """The Channels group of a user's open run pages (access changes are sent to it)."""
    return f"user-{user_id}"


class RunConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: tuple[str, ...] = ()

    async def connect(self):
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        self.bad_frames = 0
        user = self.scope.get("user")
        await self.accept()  # then close with a code a browser can read (a refused handshake is 1006)
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        last_seq = await self._last_seq()
        if last_seq is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.groups_joined = (live.group(self.run_id), user_group(user.pk))
        for name in self.groups_joined:
            await self.channel_layer.group_add(name, self.channel_name)
        self.checked_at = time.monotonic()
        await self.send_json({"type": "hello", "run": self.run_id, "last_seq": last_seq})

    async def disconnect(self, code):
        for name in self.groups_joined:
            await self.channel_layer.group_discard(name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data if text_data is not None else bytes_data)
        except (TypeError, ValueError):
            content = None
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        after = content.get("after") if isinstance(content, dict) else None
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < MAX_SEQ:
            self.bad_frames += 1
            if self.bad_frames >= MAX_BAD_FRAMES:
                await self.close(code=CLOSE_BAD_FRAMES)
                return
            await self.send_json({"type": "error", "error": 'send {"after": <non-negative seq>}'})
            return
        if not await self._still_allowed():
            return
        events = await self._events_after(after)
        await self.send_json({"type": "events", "after": after, "events": events})

    async def run_event(self, message):
        """A committed event from the live channel (``type: run.event``)."""
        if time.monotonic() - self.checked_at > ACCESS_RECHECK_S and not await self._still_allowed():
            return
        await self.send_json(live.frame(message["event"]))

    async def access_changed(self, message):
        """The user's teams changed or they logged out (``type: access.changed``)."""
        await self._still_allowed()

    async def _still_allowed(self) -> bool:
        self.checked_at = time.monotonic()
        if not await self._session_alive():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        if await self._last_seq() is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return False
        return True

    @database_sync_to_async
    def _session_alive(self) -> bool:
        session = self.scope.get("session")
        if not isinstance(session, SessionBase) or not session.session_key:
            return False
        return session.exists(session.session_key)

    @database_sync_to_async
    def _last_seq(self):
        runs = selectors.visible_runs(self.scope["user"]).filter(pk=self.run_id)
        return runs.values_list("last_seq", flat=True).first()

    @database_sync_to_async
    def _events_after(self, after):
        return selectors.events_after(self.run_id, after)
