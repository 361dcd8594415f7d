"""The run page's websocket: it only notifies; the database is the truth.

On connect the consumer checks the user is logged in (close 4401 if not) and may see the run
(close 4404 if not, the same as a missing run: ids leak nothing), joins the run's live group
(search.live) and says which sequence number the run is at. The client sends ``{"after": <seq>}`` (on connect, and
whenever it sees a gap) and gets every stored event after it, in order; live events then
arrive as ``{"type": "event", "event": {...,"seq": n}}``.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from search import live, selectors

CLOSE_NOT_FOUND = 4404
CLOSE_UNAUTHENTICATED = 4401


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        last_seq = await self._last_seq()
        if last_seq is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = live.group(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "run": self.run_id, "last_seq": last_seq})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        after = content.get("after") if isinstance(content, dict) else None
        if not isinstance(after, int) or after < 0:
            await self.send_json({"type": "error", "error": 'send {"after": <non-negative seq>}'})
            return
        events = await self._events_after(after)
        await self.send_json({"type": "events", "after": after, "events": events})

    async def run_event(self, message):
        """A committed event from the live channel (``type: run.event``)."""
        await self.send_json(live.frame(message["event"]))

    @database_sync_to_async
    def _last_seq(self):
        runs = selectors.visible_runs(self.scope["user"]).filter(pk=self.run_id)
        return runs.values_list("last_seq", flat=True).first()

    @database_sync_to_async
    def _events_after(self, after):
        return selectors.events_after(self.run_id, after)
