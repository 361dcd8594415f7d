"""The typed events a search emits, and the sink interface that receives them.

The engine never prints, writes a database or talks to a browser: it calls
``sink.emit(event)``. A CLI prints, a worker persists and broadcasts, a test collects.
Every event serializes to a flat JSON object with a ``kind`` field (docs/events.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    kernel: dict
    target: str
    strategy: str
    flops: float
    budget: dict
    settings: dict


@dataclass(frozen=True)
class RunResumed(Event):
    """A run picked up again from its saved state (after a worker died, or resume)."""

    kind: ClassVar[str] = "run_resumed"
    nodes: int
    trials: int
    llm_calls: int


@dataclass(frozen=True)
class BaselineMeasured(Event):
    kind: ClassVar[str] = "baseline_measured"
    status: str
    latency_s: float | None
    error: str = ""
    repeats_s: tuple = ()  # each repeat's latency: the spread of the baseline


@dataclass(frozen=True)
class WarmStarted(Event):
    """A warm start trained the cost model on earlier runs' records before the first round."""

    kind: ClassVar[str] = "warm_started"
    records: int
    kernels: int
    seeded: int
    skipped: int


@dataclass(frozen=True)
class NodeRecord:
    """One node of the shared tree. This field list is the node's one schema: the engine's
    ``node_created`` event, the database row (search.models.Node), the saved state that
    resume reads, the exports and the run page all use exactly these names."""

    node_id: int
    parent_id: int | None
    depth: int
    created_by: str | None = None  # the model whose proposal made it; None for random moves
    expand_model: str | None = None  # the model assigned to expand it
    mutators: list = field(default_factory=list)
    decisions: dict = field(default_factory=dict)
    predicted: float = 0.0  # the cost model's score when the node was made
    parent_score: float | None = None  # the parent's score then (hit rate, course alteration)
    shash: str = ""  # structural hash of the scheduled module
    call_id: int | None = None  # the LLM call whose proposal made it
    visits: int = 0
    value: float = 0.0
    fail_streak: int = 0
    dead: bool = False
    status: str | None = None  # None until measured
    latency: float | None = None  # seconds, once measured correctly
    # what made it (ORIGINS): a root sample, a tree expansion by the prior or an LLM, refine's
    # mutant of a fast measured schedule (of the prior's or an LLM's move)...; None where unknown
    # (rows saved before origins were recorded)
    origin: str | None = None
    trace: list | None = field(default=None, repr=False)  # full trace; persisted, not broadcast


#: a node's ``origin``: what made it (the value stored), and the words the run page and summaries use for it
SAMPLE, WARM, SCOUT, RANDOM = "sample", "warm", "scout", "random"
PRIOR_MOVE, LLM_MOVE, REFINE, LLM_REFINE, EVOLUTION = "prior", "llm", "refine", "llm-refine", "evolution"
ORIGINS: dict[str, str] = {
    SAMPLE: "root sample",  # the root population or a fresh design-space sample
    WARM: "warm seed",  # an earlier run's schedule (warm start)
    SCOUT: "sketch scout",  # a sample of a sketch the tree lacked
    RANDOM: "random pick",  # a random sample measured unscreened
    PRIOR_MOVE: "tree, prior's mutator",  # a tree expansion with a mutator drawn from the prior
    LLM_MOVE: "tree, LLM's proposal",  # a tree expansion with an LLM's proposal
    REFINE: "refine, prior's mutator",  # refine's mutant of a fast measured schedule
    LLM_REFINE: "refine, LLM's proposal",  # ... with an LLM's proposal for it (llm_refine)
    EVOLUTION: "evolutionary search",  # MetaSchedule's evolutionary search (no tree)
}

#: the node's fields, in order (what the database, exports and pages read)
NODE_FIELDS = tuple(f.name for f in fields(NodeRecord))


@dataclass(frozen=True)
class NodeCreated(NodeRecord, Event):
    kind: ClassVar[str] = "node_created"


@dataclass(frozen=True)
class ExpansionFailed(Event):
    kind: ClassVar[str] = "expansion_failed"
    node_id: int
    model: str | None
    reason: str
    fail_streak: int
    dead: bool


@dataclass(frozen=True)
class Backpropagated(Event):
    kind: ClassVar[str] = "backpropagated"
    path: list  # node ids from the expanded node up to the root
    reward: float


@dataclass(frozen=True)
class NodeMeasured(Event):
    kind: ClassVar[str] = "node_measured"
    node_id: int
    trial: int
    status: str
    latency_s: float | None
    build_s: float = 0.0
    error: str = ""
    coarse: bool = False  # timed by two single runs only: slower than the run's timing cutoff


@dataclass(frozen=True)
class BestImproved(Event):
    kind: ClassVar[str] = "best_improved"
    node_id: int
    trial: int
    latency_s: float
    gflops: float
    speedup: float | None


@dataclass(frozen=True)
class Progress(Event):
    kind: ClassVar[str] = "progress"
    trials: int
    trials_budget: int
    expansions: int
    nodes: int
    best_latency_s: float | None
    elapsed_s: float
    llm_calls: int = 0
    usd: float = 0.0
    evaluations: int = 0  # schedules the trained cost model has scored (screening's work)
    measure_s: float = 0.0  # of elapsed_s: building, checking and timing candidates (tree strategies)
    coarse: int = 0  # candidates timed by two single runs only (slower than the timing cutoff)
    sketches: int = 0  # design-space sketches with a measured schedule (tree strategies)
    sketches_total: int = 0  # the design space's sketches (0: not a tree strategy)


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str  # "succeeded" | "failed" | "cancelled"
    reason: str
    trials: int
    best_node_id: int | None
    best_latency_s: float | None
    baseline_latency_s: float | None
    elapsed_s: float


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class NullSink:
    def emit(self, event: Event) -> None:
        pass


class ListSink:
    """Keeps every event; what tests and the benchmark read."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class FanOutSink:
    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)


@dataclass(frozen=True)
class LLMCallRecorded(Event):
    kind: ClassVar[str] = "llm_call"
    call_id: int
    node_id: int  # the node the call was made to expand
    model: str
    prompt_tokens: int
    completion_tokens: int
    usd: float
    latency_s: float
    outcome: str  # ok | parse_error | invalid_model | timeout | server_error | escalation
    escalation: bool = False
    mutators: list = field(default_factory=list)
    next_model: str | None = None
    error: str = ""


#: an LLM call's fields (the ``llm_call`` event, the LLMCall row, resume and the node API)
CALL_FIELDS = tuple(f.name for f in fields(LLMCallRecorded))


@dataclass(frozen=True)
class Escalation(Event):
    """Course alteration: the largest model was asked to correct small-model regressions."""

    kind: ClassVar[str] = "escalation"
    node_id: int  # the leaf that was being expanded
    child_id: int | None  # the child that joined the tree
    small_model: str
    large_model: str
    streak: int  # consecutive small-model regressions that triggered it
    small_score: float
    large_score: float | None
    accepted: bool  # the large model's child replaced the small model's
    call_id: int | None = None
