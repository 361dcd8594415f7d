"""Expansion policies: who proposes the next joint action, and how.

The search loop asks a policy for a :class:`Proposal` (an ordered list of mutator names and
the model that will expand the child) through one small interface. ``RandomPolicy`` (the
``mcts-random`` strategy) samples a mutator by the target's probabilities; the LLM policies
(``colt``, ``single-llm``) implement the same interface and add accounting and course
alteration through :meth:`ExpansionPolicy.review`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .events import LLM_REFINE
from .request import Budget, llm_budget_reason


@dataclass
class Proposal:
    """A joint action: mutators to apply in order, and the model that expands the child."""

    mutators: list[str]
    next_model: str | None = None
    model: str | None = None  # who proposed it (None: a random move)
    escalation: bool = False
    call_id: int | None = None  # the accounting record of the call that made it
    move: Any = None  # a directed move (compiler.DirectedMove) tried before the mutators
    fallback: bool = False  # the child came from a random mutator instead (nothing of the model's applied)


@dataclass
class ExpansionRequest:
    """What a policy sees when asked to expand a leaf."""

    leaf: Any  # tree.Node
    model: str | None  # the model assigned to expand the leaf
    mutator_probs: Mapping[str, float]
    trials_used: int
    trials_budget: int
    describe: Any = None  # callable(node) -> dict of decisions, for prompts
    fastest: Any = None  # the fastest measured node so far (directed moves copy from it)


class ExpansionPolicy:
    """The interface every strategy's policy implements. Subclasses override what they need."""

    name = "policy"
    uses_llm = False

    def bind(self, *, sink, rng: np.random.Generator) -> None:
        self.sink = sink
        self.rng = rng

    def model_params(self) -> dict[str, float]:
        """Parameter count per model, for phi; empty when no LLM takes part."""
        return {}

    def initial_model(self) -> str | None:
        """The model assigned to children of depth-1 nodes (the largest model)."""
        return None

    def propose(self, request: ExpansionRequest) -> Proposal:
        raise NotImplementedError

    def route(self, request: ExpansionRequest) -> str | None:
        """The model that :meth:`propose` would call for ``request`` (None: no model is called)."""
        return None

    def propose_many(self, requests: list[ExpansionRequest]) -> list[Proposal]:
        """Proposals for several leaves at once, in order; LLM policies make the calls concurrently."""
        return [self.propose(r) for r in requests]

    def record_failure(self, model: str | None, reason: str) -> None:
        """A proposal of ``model`` applied no mutator or produced an invalid/duplicate child."""

    def review(
        self,
        request: ExpansionRequest,
        proposal: Proposal,
        parent_score: float,
        child_score: float,
        *,
        own: bool = True,
        escalate: bool = True,
    ) -> Proposal | None:
        """After a child is scored (``own``: the kept child applied the proposal's mutators, not a
        screened variant drawn from the prior): return a replacement proposal (course alteration)
        or None; with ``escalate`` False, the hit-rate bookkeeping only."""
        return None

    def escalated(
        self,
        request: ExpansionRequest,
        replacement: Proposal,
        *,
        child_id: int | None,
        accepted: bool,
        large_score: float | None,
        own: bool = True,
    ) -> None:
        """What became of the replacement that :meth:`review` returned."""

    def exhausted(self) -> str | None:
        """An LLM budget spent (no escalation then), or None."""
        return None

    def restore(self, state) -> None:
        """Rebuild statistics from a saved run (:class:`~search.engine.mcts.SavedState`)."""

    def spent(self) -> dict:
        return {"llm_calls": 0, "usd": 0.0}

    def summary(self) -> dict:
        return {}


class RandomPolicy(ExpansionPolicy):
    """One mutator drawn by the target's probabilities; no model involved."""

    name = "random"

    def propose(self, request: ExpansionRequest) -> Proposal:
        return Proposal(mutators=[random_mutator(request.mutator_probs, self.rng)])


#: how a node's mutators name one that screening drew from the target's prior (``prior_variants``)
PRIOR = "Prior "


def own_move(applied: list[str]) -> bool:
    """Whether a kept child is its proposal's own: none of the moves it applied is one that
    screening drew from the target's prior instead (those are recorded as "Prior <mutator>")."""
    return not any(m.startswith(PRIOR) for m in applied)


def random_mutator(probs: Mapping[str, float], rng: np.random.Generator) -> str:
    names = list(probs)
    p = np.array([probs[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


# --- the LLM policies: colt (a fleet) and single-llm (one model) ------------------------------


@dataclass
class ModelStats:
    calls: int = 0
    scored: int = 0  # proposals whose child was scored against its parent
    hits: int = 0  # ... and scored above it
    own: int = 0  # ... and kept the model's own mutators (not a variant screening drew from the prior)
    errors: int = 0
    errors_by_kind: dict = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    latency_s: float = 0.0
    escalations: int = 0
    consecutive_failures: int = 0  # calls in a row that got no reply (timeout, server down)
    failed_at: float = 0.0  # time.monotonic() of the last such call

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0

    @property
    def own_share(self) -> float:
        return self.own / self.scored if self.scored else 0.0

    def error(self, kind: str, n: int = 1) -> None:
        self.errors += n
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + n

    def to_dict(self) -> dict:
        return {
            "calls": self.calls,
            "hit_rate": self.hit_rate,
            "own_share": self.own_share,
            "errors": self.errors,
            "errors_by_kind": dict(self.errors_by_kind),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "usd": self.usd,
            "mean_latency_s": self.latency_s / self.calls if self.calls else 0.0,
            "escalations": self.escalations,
        }


class LLMPolicy(ExpansionPolicy):
    """Asks the model assigned to a leaf for a joint action; accounts for every call.

    With a fleet of several models this is COLT: the LLM-aware UCT (through
    :meth:`model_params`), joint actions choosing the next model, and course alteration
    (every ``k``-th consecutive small-model regression asks the largest model to correct).
    With one model it is the single-LLM Reasoning Compiler: plain UCT, no escalation.
    """

    UNHEALTHY_AFTER = 3  # consecutive failed calls before a model is routed around
    RETRY_AFTER_S = 60.0  # ... until this long after its last failure, when it is tried again
    uses_llm = True

    def __init__(
        self,
        fleet,
        client,
        *,
        kernel: str,
        target: str,
        course_alteration_k: int | None = 2,
        budget: Budget | None = None,
        directed: bool = False,
        screened_to_small: bool = True,
        cost_routing: bool = False,
        compact_prompt: bool = False,
        largest_share_floor: float = 0.0,
    ):
        from .llm import Fleet

        if not isinstance(fleet, Fleet):
            raise TypeError("fleet must be a Fleet")
        self.fleet = fleet
        self.client = client
        self.kernel = kernel
        self.target = target
        self.k = course_alteration_k if len(fleet.models) > 1 else None
        self.budget = budget or Budget()
        self.directed = directed  # replies may set one decision; prompts show the fastest schedule
        self.screened_to_small = screened_to_small  # who expands nodes screening added (see propose)
        self.cost_routing = cost_routing  # ... which small model: hits per dollar, not hit rate alone
        # ancestors shown as what differs (prompting.user_prompt); directed prompts show them whole
        self.compact_prompt = compact_prompt and not directed
        # the share of calls the largest model keeps (the prompt asks the models for 20%; see route)
        self.largest_share_floor = largest_share_floor if len(fleet.models) > 1 else 0.0
        self.stats = {m.name: ModelStats() for m in fleet.models}
        self.calls = 0
        self.usd = 0.0
        self.streak = 0  # consecutive small-model regressions
        self.escalations = 0
        self._pending_escalation: tuple[str, int, float] | None = None  # (small model, streak, its score)
        self._system: str | None = None
        self.name = "colt" if len(fleet.models) > 1 else "single-llm"

    # -- interface -------------------------------------------------------------------------------
    def model_params(self) -> dict[str, float]:
        return self.fleet.params() if len(self.fleet.models) > 1 else {}

    def initial_model(self) -> str | None:
        return self.fleet.largest.name

    def exhausted(self) -> str | None:
        return llm_budget_reason(self.budget, self.calls, self.usd)

    def spent(self) -> dict:
        return {"llm_calls": self.calls, "usd": self.usd}

    def largest_share(self) -> float:
        return self.stats[self.fleet.largest.name].calls / self.calls if self.calls else 0.0

    def summary(self) -> dict:
        return {
            "llm_calls": self.calls,
            "usd": self.usd,
            "largest_model": self.fleet.largest.name,
            "largest_share": self.largest_share(),
            "escalations": self.escalations,
            "models": {name: s.to_dict() for name, s in self.stats.items()},
        }

    def restore(self, state) -> None:
        for call in state.calls:
            stats = self.stats.get(call["model"])
            if stats is None:
                continue
            self.calls = max(self.calls, call["call_id"])
            self.usd += call["usd"]
            stats.calls += 1
            stats.usd += call["usd"]
            stats.prompt_tokens += call["prompt_tokens"]
            stats.completion_tokens += call["completion_tokens"]
            stats.latency_s += call["latency_s"]
            if call["escalation"]:
                stats.escalations += 1
            outcome = call["outcome"]
            if outcome not in ("ok", "escalation"):
                stats.error(outcome)
        self.escalations = state.escalations
        largest = self.fleet.largest.name
        for node in sorted(state.nodes, key=lambda n: n.node_id):
            if node.created_by in self.stats and node.parent_score is not None:
                s = self.stats[node.created_by]
                s.scored += 1
                hit = node.predicted > node.parent_score
                s.hits += int(hit)
                s.own += int(own_move(node.mutators))
                if node.created_by != largest and node.origin != LLM_REFINE:  # (refine: no course alteration)
                    self.streak = 0 if node.predicted >= node.parent_score else self.streak + 1

    # -- prompting ---------------------------------------------------------------------------------
    def _messages(self, request: ExpansionRequest, correction: str = "") -> list[dict]:
        from .prompting import system_prompt, user_prompt

        if self._system is None:
            self._system = system_prompt(
                kernel=self.kernel,
                target=self.target,
                mutators=list(request.mutator_probs),
                models=self.fleet.params(),
                directed=self.directed,
                compact=self.compact_prompt,
            )

        def info(node) -> dict:
            return {
                "decisions": request.describe(node) if request.describe else {},
                "score": node.predicted,
                "latency_ms": node.latency * 1e3 if node.latency else None,
            }

        nodes: list[dict | None] = []
        node = request.leaf
        for _ in range(3):
            if node is None or node.parent is None:  # the root is a dummy
                nodes.append(None)
            else:
                nodes.append(info(node))
                node = node.parent
        fastest = info(request.fastest) if self.directed and request.fastest is not None else None
        user = user_prompt(
            nodes=nodes,
            depth=request.leaf.depth,
            trials_used=request.trials_used,
            trials_budget=request.trials_budget,
            stats={n: {"calls": s.calls, "hit_rate": s.hit_rate, "errors": s.errors} for n, s in self.stats.items()},
            largest_share=self.largest_share(),
            correction=correction,
            fastest=fastest,
            compact=self.compact_prompt,
        )
        return [{"role": "system", "content": self._system}, {"role": "user", "content": user}]

    def _healthy(self, name: str) -> bool:
        """False while the model's server is down: UNHEALTHY_AFTER calls in a row got no reply;
        after RETRY_AFTER_S it gets one call again (and is routed around again if it fails)."""
        s = self.stats[name]
        if s.consecutive_failures < self.UNHEALTHY_AFTER:
            return True
        return time.monotonic() - s.failed_at >= self.RETRY_AFTER_S

    def _fallback_model(self, current: str) -> str:
        """Best hit rate among models with scored calls, then the current model, then the largest."""
        scored = [n for n, s in self.stats.items() if s.scored and self._healthy(n)]
        if scored:
            return max(scored, key=lambda n: (self.stats[n].hit_rate, -self.fleet.get(n).params))
        if self._healthy(current):
            return current
        healthy = [m for m in self.fleet.models if self._healthy(m.name)]
        return max(healthy or self.fleet.models, key=lambda m: m.params).name

    def _ask(
        self, model_name: str, request: ExpansionRequest, *, correction: str = "", escalation: bool = False
    ) -> Proposal:
        call = self._prepare(model_name, request, correction)
        return self._account(model_name, request, self._complete(call), escalation)

    def _prepare(self, model_name: str, request: ExpansionRequest, correction: str = "") -> tuple:
        """What one call sends (built on the search's thread: prompts read the tree)."""
        from .prompting import response_schema

        schema = response_schema(list(request.mutator_probs), self.fleet.names, directed=self.directed)
        model = self.fleet.get(model_name)
        prepare = getattr(self.client, "prepare", None)
        if prepare is not None:  # client set-up (LiteLLM's model registry) stays off the call threads
            prepare(model)
        return model, self._messages(request, correction), schema

    def _complete(self, call: tuple):
        model, messages, schema = call
        return self.client.complete(model, messages, schema=schema)

    def _account(self, model_name: str, request: ExpansionRequest, reply, escalation: bool) -> Proposal:
        """Count a reply and parse it into a proposal (on the search's thread: events, statistics)."""
        from . import events as ev
        from .llm import INVALID_MODEL, OK, PARSE_ERROR
        from .prompting import parse_reply

        mutators = list(request.mutator_probs)
        stats = self.stats[model_name]
        self.calls += 1
        self.usd += reply.usd
        stats.calls += 1
        stats.usd += reply.usd
        stats.prompt_tokens += reply.prompt_tokens
        stats.completion_tokens += reply.completion_tokens
        stats.latency_s += reply.latency_s
        outcome, proposal = reply.outcome, Proposal(mutators=[], model=model_name, escalation=escalation)
        if reply.outcome == OK:
            stats.consecutive_failures = 0
            parsed = parse_reply(reply.text, mutators, self.fleet.names)
            if parsed.invalid_mutators:
                stats.error("invalid_mutator", parsed.invalid_mutators)
            if parsed.invalid_model:
                stats.error(INVALID_MODEL)
            if not parsed.parsed:
                stats.error(PARSE_ERROR)
                outcome = PARSE_ERROR
            elif parsed.invalid_model:
                outcome = INVALID_MODEL
            proposal.mutators = parsed.mutators
            proposal.next_model = parsed.next_model
            proposal.move = parsed.move if self.directed else None
        else:
            stats.consecutive_failures += 1
            stats.failed_at = time.monotonic()
            stats.error(reply.outcome)
        if len(self.fleet.models) == 1:
            proposal.next_model = model_name
        elif proposal.next_model is None or not self._healthy(proposal.next_model):
            proposal.next_model = self._fallback_model(model_name)
        if escalation:
            stats.escalations += 1
            if outcome == OK:
                outcome = "escalation"
        proposal.call_id = self.calls
        self.sink.emit(
            ev.LLMCallRecorded(
                call_id=self.calls,
                node_id=request.leaf.id,
                model=model_name,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                usd=reply.usd,
                latency_s=reply.latency_s,
                outcome=outcome,
                escalation=escalation,
                mutators=list(proposal.mutators),
                next_model=proposal.next_model,
                error=reply.error,
            )
        )
        return proposal

    #: the call a model's price is read at (tokens in, tokens out): about what a compact prompt
    #: and a reply cost; only the ratio between models matters
    TYPICAL_CALL = (500, 50)

    def call_prices(self, names) -> dict[str, float]:
        """What one call to each of ``names`` costs at the fleet's list prices. Where any of them is
        free (a self-hosted server priced at 0), parameter counts stand in for all of them: the
        compute each call takes, in one unit (dollars and parameters do not compare)."""
        models = [self.fleet.get(n) for n in names]
        prices = {m.name: m.cost(*self.TYPICAL_CALL) for m in models}
        if all(p > 0 for p in prices.values()):
            return prices
        return {m.name: m.params for m in models}

    def _unassigned_model(self) -> str:
        """Who expands a node no call assigned (screening added it: refine, fresh samples, a warm
        seed): a small model not called yet, the smallest first, so that every model the user
        chose gets tried; then the small model with the best hit rate so far, smoothed (one hit in
        two added), the smaller on a tie. Without the first rule an unscored model could never win:
        screening keeps the best of many variants, so a model's children score above their parents
        in about 9 calls of 10, and the first small model called kept every later node (two of the four
        local models made no call in most runs, docs/benchmarks.md). Sending these nodes to the
        largest model, as depth-1 children are, made it 24-53% of the calls. With
        ``cost_routing``: the most expected hits per dollar (the smoothed hit rate over the price
        of a call), so a model half the price needs only half the hit rate."""
        small = [m for m in self.fleet.models if m.name != self.fleet.largest.name and self._healthy(m.name)]
        if not small:
            return self.fleet.largest.name
        untried = [m for m in small if not self.stats[m.name].calls and not self.stats[m.name].scored]
        if untried:
            return min(untried, key=lambda m: m.params).name

        def smoothed(m) -> float:
            s = self.stats[m.name]
            return (s.hits + 1) / (s.scored + 2)

        if self.cost_routing:
            price = self.call_prices([m.name for m in small])
            return max(small, key=lambda m: (smoothed(m) / price[m.name], -m.params)).name
        return max(small, key=lambda m: (smoothed(m), -m.params)).name

    def _below_floor(self, pending: list[str]) -> bool:
        """Whether the next call must go to the largest model to keep its share of the calls at
        ``largest_share_floor``, counting ``pending`` (calls routed but not yet made): where a
        small model took it, the largest's share after it would fall below the floor."""
        if not self.largest_share_floor:
            return False
        largest = self.fleet.largest.name
        calls = self.stats[largest].calls + pending.count(largest)
        return calls < self.largest_share_floor * (self.calls + len(pending) + 1)

    def route(self, request: ExpansionRequest, pending: list[str] | None = None) -> str:
        """The model that expands the request's leaf: the one a call assigned it, or for a node
        screening added, a small one (``screened_to_small``) or the largest. With
        ``largest_share_floor``, the largest instead wherever its share would fall below the floor
        (why, and what it measured: ``SearchSettings.largest_share_floor``)."""
        if request.model in self.stats:
            model = request.model
        else:
            model = self._unassigned_model() if self.screened_to_small else self.fleet.largest.name
        if self._below_floor(pending or []):
            model = self.fleet.largest.name
        if not self._healthy(model):
            model = self._fallback_model(model)
        return model

    def propose(self, request: ExpansionRequest) -> Proposal:
        return self._ask(self.route(request), request)

    def propose_many(self, requests: list[ExpansionRequest]) -> list[Proposal]:
        """One call per request, all in flight at once (the search picks requests for different
        models, one per model server); each reply is accounted in order, as if made one by one.
        The prompts all show the statistics from before the batch."""
        if len(requests) <= 1:
            return [self.propose(r) for r in requests]
        from concurrent.futures import ThreadPoolExecutor

        models: list[str] = []
        for r in requests:
            models.append(self.route(r, pending=models))
        calls = [self._prepare(m, r) for m, r in zip(models, requests, strict=True)]
        with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="llm-call") as pool:
            futures = [pool.submit(self._complete, call) for call in calls]
        # every finished call is accounted (it was paid for) before an unexpected error propagates
        proposals, error = [], None
        for m, r, future in zip(models, requests, futures, strict=True):
            if future.exception() is not None:
                error = error or future.exception()
                continue
            proposals.append(self._account(m, r, future.result(), False))
        if error is not None:
            raise error
        return proposals

    def record_failure(self, model: str | None, reason: str) -> None:
        """A proposal that made no child. A call that got no reply (timeout, server down) or no
        parsable one was counted when it was made, so only a proposal of real mutators counts."""
        if model in self.stats:
            self.stats[model].error("invalid_move" if reason.startswith("directed move") else "no_child")

    def review(
        self,
        request: ExpansionRequest,
        proposal: Proposal,
        parent_score: float,
        child_score: float,
        *,
        own: bool = True,
        escalate: bool = True,
    ) -> Proposal | None:
        """Hit-rate bookkeeping, and course alteration on every k-th small-model regression."""
        from .prompting import correction_note

        if proposal.model not in self.stats or proposal.fallback:
            return None  # a random fallback child is not the model's: no hit, no miss, no escalation
        stats = self.stats[proposal.model]
        stats.scored += 1
        stats.hits += int(child_score > parent_score)
        stats.own += int(own)
        largest = self.fleet.largest.name
        if proposal.escalation or proposal.model == largest or self.k is None or not escalate:
            return None
        if child_score >= parent_score:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak % self.k != 0 or self.exhausted() or not self._healthy(largest):
            return None  # (a largest model whose server is down is routed around, not escalated to)
        self.escalations += 1
        note = correction_note(proposal.model, proposal.mutators, parent_score, child_score, self.streak)
        self._pending_escalation = (proposal.model, self.streak, child_score)
        return self._ask(largest, request, correction=note, escalation=True)

    def escalated(
        self,
        request: ExpansionRequest,
        replacement: Proposal,
        *,
        child_id: int | None,
        accepted: bool,
        large_score: float | None,
        own: bool = True,
    ) -> None:
        from . import events as ev

        assert self._pending_escalation is not None and replacement.model is not None
        small, streak, small_score = self._pending_escalation
        if large_score is not None and replacement.model in self.stats:
            s = self.stats[replacement.model]
            s.scored += 1
            s.hits += int(large_score > request.leaf.predicted)
            s.own += int(own)
        self.sink.emit(
            ev.Escalation(
                node_id=request.leaf.id,
                child_id=child_id,
                small_model=small,
                large_model=replacement.model,
                streak=streak,
                small_score=small_score,
                large_score=large_score,
                accepted=accepted,
                call_id=replacement.call_id,
            )
        )
