"""The registry of search strategies: every one is a :class:`~.strategy.Strategy`, found by name.

A strategy is built from the run request and the parts that differ between a test, a CLI
and a worker (the design space, a measurer, an event sink, an LLM client); it may restore a
saved state, then :meth:`Strategy.run` searches until the one :class:`StopRule` says stop,
checked at least between measurement batches. Adding a strategy is a subclass with a
``name`` and :func:`register`; the shared contract test (tests/engine/test_strategies.py)
runs every registered one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .evolutionary import Evolutionary
from .request import RunRequest
from .strategy import Strategy
from .warm import WarmReport, WarmStart

if TYPE_CHECKING:
    from .mcts import SavedState, SearchResult
    from .policy import ExpansionPolicy

STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def get_strategy(name: str) -> type[Strategy]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


def descriptions() -> dict[str, str]:
    return {name: cls.description for name, cls in STRATEGIES.items()}


# --- the tree strategies: one MCTS, a policy per strategy ---------------------------------------


class TreeSearch(Strategy):
    """The shared MCTS (mcts.py) with the policy this strategy makes."""

    def make_policy(self) -> ExpansionPolicy:
        raise NotImplementedError

    def __init__(self, request: RunRequest, **parts):
        from .mcts import MCTSSearch

        super().__init__(request, **parts)
        self.policy = self.make_policy()
        self.search = MCTSSearch(
            space=self.space,
            policy=self.policy,
            measurer=self.measurer,
            sink=self.sink,
            settings=request.settings,
            budget=request.budget,
            stop=self.stop,
            baseline_latency=self.baseline,
        )

    def restore(self, state: SavedState) -> None:
        self.search.restore(state)

    def warm(self, warm: WarmStart) -> WarmReport:
        return self.search.warm_start(warm)

    def run(self) -> SearchResult:
        return self.search.run()

    def llm_summary(self) -> dict | None:
        return self.policy.summary() if self.uses_llm else None


@register
class MCTSRandom(TreeSearch):
    name = "mcts-random"
    description = "the shared MCTS with random mutator choices, no LLM"

    def make_policy(self) -> ExpansionPolicy:
        from .policy import RandomPolicy

        return RandomPolicy()


class _LLMTreeSearch(TreeSearch):
    uses_llm = True

    def make_policy(self) -> ExpansionPolicy:
        from .llm import LiteLLMClient
        from .policy import LLMPolicy

        if self.request.fleet is None:
            raise ValueError(f"strategy {self.name} needs a fleet of LLMs")
        return LLMPolicy(
            self.request.fleet,
            self.llm_client or LiteLLMClient(),
            kernel=self.request.kernel.label,
            target=self.request.target,
            course_alteration_k=self.request.settings.course_alteration_k,
            budget=self.request.budget,
            directed=self.request.settings.directed,
            screened_to_small=self.request.settings.screened_to_small,
            cost_routing=self.request.settings.cost_routing,
            compact_prompt=self.request.settings.compact_prompt,
            largest_share_floor=self.request.settings.largest_share_floor,
        )


@register
class Colt(_LLMTreeSearch):
    name = "colt"
    description = "the shared MCTS expanded by a fleet of LLMs (LLM-aware UCT, course alteration)"


@register
class SingleLLM(_LLMTreeSearch):
    name = "single-llm"
    description = "the shared MCTS expanded by one LLM with plain UCT (the Reasoning Compiler)"


register(Evolutionary)
