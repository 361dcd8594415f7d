"""Send a persisted event to the run's Channels group (no-op until a channel layer exists)."""

from __future__ import annotations


def broadcast_event(run_id: int, seq: int, payload: dict) -> None:
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer
    except ImportError:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(f"run-{run_id}", {"type": "run.event", "seq": seq, "event": payload})
