"""The strategy contract: what every search strategy implements (the registry by name is
strategies.py, which imports each implementation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from . import events as ev
from .request import RunRequest, StopRule
from .warm import WarmReport, WarmStart

if TYPE_CHECKING:
    from .compiler import SearchSpace
    from .llm import LLMClient
    from .mcts import SavedState, SearchResult
    from .measure import Measurer


class Strategy:
    """The interface every search strategy implements."""

    name: ClassVar[str]
    description: ClassVar[str]
    uses_llm: ClassVar[bool] = False

    def __init__(
        self,
        request: RunRequest,
        *,
        space: SearchSpace,
        measurer: Measurer,
        sink: ev.EventSink,
        stop: StopRule,
        baseline_latency: float | None = None,
        llm_client: LLMClient | None = None,
    ):
        self.request = request
        self.space = space
        self.measurer = measurer
        self.sink = sink
        self.stop = stop
        self.baseline = baseline_latency
        self.llm_client = llm_client

    def restore(self, state: SavedState) -> None:
        """Go on from a saved run (resume, a redelivered task)."""
        raise NotImplementedError

    def warm(self, warm: WarmStart) -> WarmReport:
        """Before a new run: put earlier runs' records to work (see warm.py)."""
        return WarmReport(notes=[f"{self.name} does not use a warm start"])

    def run(self) -> SearchResult:
        raise NotImplementedError

    def llm_summary(self) -> dict | None:
        """Per-model calls, cost and hit rate, for strategies that use LLMs."""
        return None
