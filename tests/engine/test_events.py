"""The events a search emits: flat JSON objects with a kind, the node schema they share with
the database, and the sinks that receive them."""

from search.engine import events as ev


def test_every_event_is_a_flat_json_object_with_its_kind():
    import json

    event = ev.NodeMeasured(node_id=3, trial=1, status="ok", latency_s=0.002)
    data = event.to_dict()
    assert data["kind"] == "node_measured" and data["latency_s"] == 0.002
    assert json.loads(json.dumps(data)) == data


def test_node_created_is_a_node_record_and_lists_the_schema_in_order():
    created = ev.NodeCreated(node_id=4, parent_id=1, depth=2, created_by="small", mutators=["MutateUnroll"])
    assert isinstance(created, ev.NodeRecord)
    assert tuple(k for k in created.to_dict() if k != "kind") == ev.NODE_FIELDS
    assert ev.NODE_FIELDS[:3] == ("node_id", "parent_id", "depth") and ev.NODE_FIELDS[-1] == "trace"
    assert created.status is None and created.latency is None and created.visits == 0


def test_call_fields_are_the_llm_call_events_fields():
    call = ev.LLMCallRecorded(call_id=1, node_id=2, model="m", prompt_tokens=3, completion_tokens=4, usd=0.5,
                              latency_s=1.0, outcome="ok")  # fmt: skip
    assert set(ev.CALL_FIELDS) == set(call.to_dict()) - {"kind"}


def test_sinks_collect_and_fan_out():
    first, second = ev.ListSink(), ev.ListSink()
    fan = ev.FanOutSink(first, ev.NullSink(), second)
    event = ev.BaselineMeasured(status="ok", latency_s=0.1)
    fan.emit(event)
    assert first.events == [event] and second.of(ev.BaselineMeasured) == [event]
