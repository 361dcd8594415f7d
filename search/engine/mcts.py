"""The shared MCTS loop (ALGORITHM.md sections 1-5), the same for every tree strategy.

One iteration: select a leaf with the LLM-aware UCT, ask the policy for a joint action,
apply its mutators, score the child with the cost model, let the policy review it (course
alteration), roll out and back-propagate. Every ``expansions_per_round`` iterations a
measurement round compiles and times a batch of unmeasured nodes (95% by predicted score,
5% at random), trains the cost model and updates the best schedule. The run stops at the
first budget spent: measured trials, the policy's LLM calls or USD, wall-clock, or a stop
request from outside (cancel).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from . import events as ev
from .compiler import Candidate, CostModel, SearchSpace
from .events import LLM_MOVE, LLM_REFINE, PRIOR_MOVE, RANDOM, REFINE, SAMPLE, SCOUT, WARM
from .measure import Measurer, MeasureResult
from .policy import PRIOR, ExpansionPolicy, ExpansionRequest, Proposal, own_move, random_mutator
from .request import Budget, SearchSettings, StopRule
from .tree import Node, Tree, backpropagate, select
from .warm import WarmReport, WarmStart
from .workloads import flops


@dataclass
class SavedState:
    """What a persisted run holds, enough for :meth:`MCTSSearch.restore` to go on."""

    nodes: list[ev.NodeRecord]
    trials: int
    history: list = field(default_factory=list)  # (trial, best latency so far)
    calls: list = field(default_factory=list)  # dicts of LLMCallRecorded fields
    escalations: int = 0
    coarse: int = 0  # measurements timed by two single runs (the timing cutoff)


@dataclass
class SearchResult:
    best: Node | None
    best_latency: float | None
    trials: int
    stop_reason: str
    elapsed_s: float
    tree: Tree
    history: list = field(default_factory=list)  # (trial, best latency so far)
    expansions: int = 0
    evaluations: int = 0  # schedules scored by the trained cost model
    extractions: int = 0  # of those, schedules whose features were extracted (the rest remembered)
    measure_s: float = 0.0  # of elapsed_s, in the measurer: building, checking and timing candidates
    build_s: float = 0.0  # of measure_s, compiling
    coarse: int = 0  # candidates timed by two single runs only (slower than the timing cutoff)
    sketches: int = 0  # design-space sketches with a measured schedule
    sketches_total: int = 0  # the design space's sketches

    @property
    def best_candidate(self) -> Candidate | None:
        return self.best.candidate if self.best else None


#: sketch scouting: samples drawn per missing sketch (at most), and in all per round (about)
SCOUT_SAMPLES = 4
SCOUT_POOL = 256
#: the papers' root population: the children of these samples go to the largest model
PAPERS_POPULATION = 3
#: the mutators label of a root child that a warm start placed (an earlier run's schedule), so a
#: resumed run knows its population starts after them
WARM_SEED = "Warm seed"
#: the mutators label of a root child that sketch scouting placed (a sketch the tree lacked)
SKETCH_SCOUT = "Sketch scout"
#: the mutators label of a root child measured as a random sample (``random_picks``)
RANDOM_PICK = "Random sample"
#: the mutators label of a root child of a later epoch's population (``restarts``), so a resumed
#: run knows where its epoch starts
RESTART_SAMPLE = "Restart sample"
#: a refine candidate: the tree node it descends from, the candidate, the mutators applied since
#: that node, its score
_Refined = tuple[Node, Candidate, list[str], float]


class _AnyOf:
    """Membership in any of several sets, without copying them."""

    def __init__(self, *sets: set):
        self.sets = sets

    def __contains__(self, item: object) -> bool:
        return any(item in s for s in self.sets)


class MCTSSearch:
    def __init__(
        self,
        *,
        space: SearchSpace,
        policy: ExpansionPolicy,
        measurer: Measurer,
        sink: ev.EventSink,
        settings: SearchSettings,
        budget: Budget,
        stop: StopRule | None = None,
        baseline_latency: float | None = None,
    ):
        self.space = space
        self.policy = policy
        self.measurer = measurer
        self.sink = sink
        self.s = settings
        self.budget = budget
        self.baseline = baseline_latency
        self.stop = stop or StopRule(budget)
        self.rng = np.random.default_rng(settings.seed)
        self.cost_model = CostModel(space, self.rng, warmup=settings.warmup(policy.uses_llm))
        self.tree = Tree()
        self.params = policy.model_params()
        self.trials = 0
        self.expansions = 0
        self.best: Node | None = None
        self.history: list[tuple[int, float]] = []
        self.measure_s = 0.0
        self.build_s = 0.0
        self.coarse = 0
        self.scouts: list[Node] = []  # root children of new sketches, measured in the next round
        self.warm_seeds = 0  # root children a warm start placed (the population is drawn beside them)
        # restarts: the id of the current epoch's first node; the search sees only nodes from it on
        self.epoch_start = 1
        self.epochs_started = 0
        self.flops = flops(space.spec)
        self.expansions_per_round = settings.expansions_per_round or settings.measure_batch * (
            1 if policy.uses_llm else 2
        )
        self.prior_expansions = settings.prior(policy.uses_llm)
        policy.bind(sink=sink, rng=self.rng)

    # -- building blocks -----------------------------------------------------------------------
    def _add(
        self,
        parent: Node,
        cand: Candidate,
        *,
        origin: str,
        created_by,
        expand_model,
        mutators,
        score,
        call_id=None,
        parent_score=None,
    ) -> Node:
        node = self.tree.add(
            parent,
            cand,
            shash=cand.shash,
            created_by=created_by,
            expand_model=expand_model,
            mutators=mutators,
            predicted=float(score),
            origin=origin,
        )
        self.sink.emit(
            ev.NodeCreated(
                node_id=node.id,
                parent_id=parent.id,
                depth=node.depth,
                created_by=created_by,
                expand_model=expand_model,
                mutators=list(mutators),
                predicted=float(score),
                shash=cand.shash,
                decisions=self.space.decisions(cand.trace),
                call_id=call_id,
                parent_score=parent_score,
                trace=cand.trace_json(),
                origin=origin,
            )
        )
        return node

    def _score(self, cand: Candidate) -> float:
        return float(self.cost_model.predict([cand])[0])

    def _apply(self, trace, mutators: list[str]) -> tuple[object | None, list[str]]:
        """Apply mutators in order, each retried a few times, skipping those that fail."""
        applied = []
        for name in mutators:
            if name not in self.space.mutators:
                continue
            for _ in range(self.s.mutator_retries):
                new = self.space.mutate(trace, name, self.rng)
                if new is not None:
                    trace = new
                    applied.append(name)
                    break
        return (trace if applied else None), applied

    def _directed(self, leaf: Node, proposal: Proposal) -> Candidate | None:
        """The child a proposal's directed move makes, if the move is legal and new; else None
        (counted against the model), and the proposal's mutators apply instead."""
        trace, why = self.space.apply_decision(leaf.candidate.trace, proposal.move)
        cand = self.space.realize(trace, self.rng) if trace is not None else None
        if cand is None:
            why = why or "the schedule does not replay with it"
        elif cand.shash in self.tree.hashes:
            cand, why = None, "duplicate schedule"
        if cand is None:
            self.policy.record_failure(proposal.model, f"directed move {proposal.move.label}: {why}")
        return cand

    def _child_of(self, leaf: Node, proposal: Proposal) -> tuple[Candidate | None, list[str], str]:
        """The candidate a proposal makes from ``leaf``; (None, applied, reason) on failure."""
        if proposal.move is not None:
            cand = self._directed(leaf, proposal)
            if cand is not None:
                return cand, [proposal.move.label], ""
        # with single_mutator, the first of the named mutators that applies; else all, in order
        alternatives = self._alternatives(proposal)
        steps = [[m] for m in alternatives] if alternatives else [proposal.mutators]
        for step in steps:
            trace, applied = self._apply(leaf.candidate.trace, step)
            if trace is not None:
                break
        if trace is None:
            if proposal.mutators:  # an empty proposal (a failed call) was counted when it was made
                self.policy.record_failure(proposal.model, "no mutator applied")
            proposal.fallback = True  # the child is a random move, not the model's
            fallback = random_mutator(self.space.mutator_probs, self.rng)
            trace, applied = self._apply(leaf.candidate.trace, [fallback])
            if trace is None:
                return None, [], "no mutator applied"
        cand = self.space.realize(trace, self.rng)
        if cand is None:
            return None, applied, "post-processing rejected the schedule"
        if cand.shash in self.tree.hashes:
            return None, applied, "duplicate schedule"
        return cand, applied, ""

    def _alternatives(self, proposal: Proposal) -> list[str] | None:
        """With ``single_mutator``: the mutators a model named, as alternatives for one move each (a
        random move or a single-mutator proposal: None, nothing to choose)."""
        if not self.s.single_mutator or proposal.model is None or proposal.fallback:
            return None
        named = [m for m in dict.fromkeys(proposal.mutators) if m in self.space.mutators]
        return named if len(named) > 1 else None

    def _scored(
        self,
        leaf: Node,
        cand: Candidate,
        applied: list[str],
        *,
        rescore_leaf: bool = True,
        prior: float = 0.0,
        alternatives: list[str] | None = None,
    ) -> tuple[Candidate, list[str], float]:
        """The child to keep and its score; the leaf is scored again in the same batch.

        With ``variants`` > 1 (screening), the proposal's mutators are applied again to the leaf
        until that many distinct new schedules exist, the cost model scores them all in one
        batched call, and the best-scored one is kept: one expansion (one LLM call) then
        explores many points and the tree keeps the promising one. A share ``prior`` of the
        attempts applies one mutator drawn from the target's prior instead (every other attempt
        at 0.5), so the cost model chooses between the model's proposal and the prior's moves;
        such a move is named "Prior <mutator>" in the child's mutators. With ``alternatives`` (the
        mutators a model named, ``single_mutator``), each attempt applies one of them in turn
        instead of all of them in sequence."""
        cands, moves = [cand], [applied]
        seen = {cand.shash}
        discard = _AnyOf(seen, self.tree.hashes)  # (both grow as the loop goes)
        for attempt in range(2 * (self.s.variants - 1)):
            if len(cands) >= self.s.variants:
                break
            from_prior = math.floor((attempt + 1) * prior) > math.floor(attempt * prior)
            if from_prior:
                mutators = [random_mutator(self.space.mutator_probs, self.rng)]
            elif alternatives:
                mutators = [alternatives[(attempt + 1) % len(alternatives)]]
            else:
                mutators = applied
            trace, moved = self._apply(leaf.candidate.trace, mutators)
            other = self.space.realize(trace, self.rng, unless=discard) if trace is not None else None
            if other is None or other.shash in discard:
                continue
            seen.add(other.shash)
            cands.append(other)
            moves.append([PRIOR + m for m in moved] if from_prior else moved)
        scores = self.cost_model.predict([*cands, leaf.candidate] if rescore_leaf else cands)
        if rescore_leaf:
            leaf.predicted, scores = float(scores[-1]), scores[:-1]
        best = int(np.argmax(scores))
        return cands[best], moves[best], float(scores[best])

    def _initial_model(self, leaf: Node) -> str | None:
        """The model for a child of a depth-1 node: the largest, as the papers give it the first
        calls; but with ``screened_to_small``, only under the papers' three root samples. The
        children of root samples beyond those (a larger population, warm seeds, fresh samples,
        sketch scouts) get no model, and so go to a small one, as the other nodes screening adds do: with 16
        samples the largest model otherwise made 94-97% of colt's calls (docs/benchmarks.md)."""
        if not self.s.screened_to_small or leaf.depth == 0:
            return self.policy.initial_model()
        rank = self.tree.root.children.index(leaf) - self.warm_seeds  # the population comes after warm seeds
        return self.policy.initial_model() if 0 <= rank < min(PAPERS_POPULATION, self.s.population) else None

    def _prior(self, proposal: Proposal) -> float:
        """``prior_variants`` for a model's own proposal; none for a random one (already the prior's)."""
        return self.s.prior_variants if proposal.model is not None and not proposal.fallback else 0.0

    def _rollout(self, cand: Candidate, score: float) -> float:
        """Reward: the cost model's score after a few random mutations, averaged."""
        rewards = []
        for _ in range(max(1, self.s.rollouts)):
            trace, last = cand.trace, None
            for _ in range(self.s.rollout_depth):
                new = self.space.mutate(trace, random_mutator(self.space.mutator_probs, self.rng), self.rng)
                if new is not None:
                    trace, last = new, new
            end = self.space.realize(last, self.rng) if last is not None else None
            rewards.append(self._score(end) if end is not None else score)
        return max(0.0, float(np.mean(rewards)))

    def _fail(self, leaf: Node, model: str | None, reason: str) -> None:
        leaf.fail_streak += 1
        if leaf.fail_streak >= self.s.dead_end_failures:
            leaf.dead = True
        self.policy.record_failure(model, reason)
        self.sink.emit(ev.ExpansionFailed(leaf.id, model, reason, leaf.fail_streak, leaf.dead))
        self.sink.emit(ev.Backpropagated(backpropagate(leaf, 0.0), 0.0))

    def _request(self, leaf: Node) -> ExpansionRequest:
        return ExpansionRequest(
            leaf=leaf,
            model=leaf.expand_model,
            mutator_probs=self.space.mutator_probs,
            trials_used=self.trials,
            trials_budget=self.budget.trials,
            describe=lambda n: self.space.decisions(n.candidate.trace),
            fastest=self.best,
        )

    # -- one iteration ---------------------------------------------------------------------------
    def expand(self, leaf: Node, proposal: Proposal | None = None, *, prior: bool = False) -> Node | None:
        """Expand ``leaf`` with ``proposal`` (made beforehand, with others in flight), or ask for one;
        with ``prior``, with one mutator drawn from the target's prior and no call (its child goes
        to a small model, as screening's nodes do, or with ``prior_keeps_model`` to the leaf's)."""
        self.expansions += 1
        request = self._request(leaf)
        if leaf.depth <= 1:
            proposal = Proposal(
                mutators=[random_mutator(self.space.mutator_probs, self.rng)],
                next_model=self._initial_model(leaf),
            )
        elif prior:
            proposal = Proposal(
                mutators=[random_mutator(self.space.mutator_probs, self.rng)],
                next_model=leaf.expand_model if self.s.prior_keeps_model else None,
            )
        elif proposal is None:
            proposal = self.policy.propose(request)
        cand, applied, reason = self._child_of(leaf, proposal)
        if cand is None:
            self._fail(leaf, None if proposal.fallback else proposal.model, reason)
            return None
        # child and parent scored by the same cost model, so "above its parent" (hit rate,
        # course alteration) compares like with like after the model retrains
        cand, applied, score = self._scored(
            leaf, cand, applied, prior=self._prior(proposal), alternatives=self._alternatives(proposal)
        )
        replacement = self.policy.review(request, proposal, leaf.predicted, score, own=own_move(applied))
        accepted, alt_score, alt_own = False, None, True
        if replacement is not None and replacement.mutators:
            alt, alt_applied, _ = self._child_of(leaf, replacement)
            if alt is not None:
                alt, alt_applied, alt_score = self._scored(
                    leaf,
                    alt,
                    alt_applied,
                    rescore_leaf=False,
                    prior=self._prior(replacement),
                    alternatives=self._alternatives(replacement),
                )
                alt_own = own_move(alt_applied)
                if alt_score >= score:  # the correction replaces the child unless it scores lower
                    accepted = True
                    cand, applied, score, proposal = alt, alt_applied, alt_score, replacement
        leaf.fail_streak = 0
        created_by = None if proposal.fallback else proposal.model
        child = self._add(
            leaf,
            cand,
            origin=PRIOR_MOVE if created_by is None else LLM_MOVE,
            created_by=created_by,
            expand_model=proposal.next_model,
            mutators=applied,
            score=score,
            call_id=proposal.call_id,
            parent_score=leaf.predicted,
        )
        if replacement is not None:
            self.policy.escalated(
                request, replacement, child_id=child.id, accepted=accepted, large_score=alt_score, own=alt_own
            )
        reward = self._rollout(cand, score)
        self.sink.emit(ev.Backpropagated(backpropagate(child, reward), reward))
        return child

    # -- measurement -----------------------------------------------------------------------------
    @property
    def best_latency(self) -> float | None:
        return self.best.latency if self.best is not None else None

    def _pick_batch(self) -> list[Node]:
        pending = [n for n in self.tree.nodes[self.epoch_start :] if n.status is None]
        if not pending:
            return []
        scores = self.cost_model.predict([n.candidate for n in pending])
        for node, score in zip(pending, scores, strict=True):
            node.predicted = float(score)
        k = min(self.s.measure_batch, self.budget.trials - self.trials, len(pending))
        order = sorted(pending, key=lambda n: (-n.predicted, n.id))
        # with population_first, the root population's unmeasured samples first, best-scored first
        # (random scores while the cost model warms up); then sketch scouts: measuring them is
        # their point (the cost model, trained on the sketches already measured, cannot rank a new
        # sketch against those)
        picks: list[Node] = []
        if self.s.population_first:
            population = set(self._population())
            picks = [n for n in order if n in population][:k]
        picks += [n for n in self.scouts if n.status is None and n not in picks][: k - len(picks)]
        self.scouts = []
        if self.s.random_picks:
            # MetaSchedule measures random samples until its cost model has 100 records; here a
            # few per round keep the model's data diverse and give scattered good regions a chance
            want = min(self.s.random_picks, k - len(picks))
            for cand in self._unseen(self.space.sample(self.rng) for _ in range(4 * want))[:want]:
                picks.append(self._add(self.tree.root, cand, origin=RANDOM, created_by=None, expand_model=None,
                                       mutators=[RANDOM_PICK], score=self._score(cand)))  # fmt: skip
        if self.s.llm_places:
            # the LLMs' proposals are measured, not only screened: their best-scored nodes first
            proposed = [n for n in order if n.created_by is not None and n not in picks]
            picks += proposed[: min(self.s.llm_places, k - len(picks))]
        for _ in range(k - len(picks)):
            rest = [n for n in order if n not in picks]
            if self.rng.random() < self.s.epsilon:
                picks.append(rest[int(self.rng.integers(len(rest)))])
            else:
                picks.append(rest[0])
        return picks

    def measure_round(self) -> int:
        picks = self._pick_batch()
        if not picks:
            return 0
        # one candidate at a time, so a cancel or the wall-clock takes effect between candidates
        # (the rest of the batch stays unmeasured in the tree, for a resumed run)
        results: list[MeasureResult] = []
        for node in picks:
            if self.stop.interrupt() is not None:
                picks = picks[: len(results)]
                break
            started = time.perf_counter()
            # a candidate already this much slower than the best is not timed in full
            cutoff = self.s.timing_cutoff * self.best_latency if self.s.timing_cutoff and self.best_latency else None
            results += self.measurer.measure([node.candidate.trace_json()], cutoff_s=cutoff)
            self.measure_s += time.perf_counter() - started
            self.build_s += results[-1].build_s
        if not picks:
            return 0
        for node, res in zip(picks, results, strict=True):
            self.trials += 1
            node.status = res.status
            latency = res.latency_s if res.ok else None
            node.latency = latency
            coarse = bool(getattr(res, "coarse", False))
            self.coarse += coarse
            self.sink.emit(ev.NodeMeasured(node.id, self.trials, res.status, latency, res.build_s, res.error, coarse))
            if latency is not None and (self.best_latency is None or latency < self.best_latency):
                self.best = node
                speedup = self.baseline / latency if self.baseline else None
                self.sink.emit(ev.BestImproved(node.id, self.trials, latency, self.flops / latency / 1e9, speedup))
            if self.best_latency is not None:
                self.history.append((self.trials, self.best_latency))
        if self.s.measured_reward:
            self._reward_measured(picks)
        self.cost_model.update([n.candidate for n in picks], [n.latency for n in picks])
        return len(picks)

    def _fresh_root_child(self) -> None:
        """With ``fresh_samples``: after a round, score that many new random points of the design
        space (every sketch, fresh decisions) with the trained cost model in one batch and add the
        best as a new root child. The papers' root keeps its first ``population`` samples for the
        whole run, so a run whose few samples all come from a weak sketch stays confined to it
        (mutators change decisions, never the sketch); this reopens the search at the root."""
        if not self.s.fresh_samples or not self.cost_model.trained:
            return
        fresh = self._unseen(self.space.sample(self.rng) for _ in range(self.s.fresh_samples))
        if fresh:
            scores = self.cost_model.predict(fresh)
            best = int(np.argmax(scores))
            self._add(self.tree.root, fresh[best], origin=SAMPLE, created_by=None, expand_model=None, mutators=[],
                      score=float(scores[best]))  # fmt: skip

    def _scout_sketches(self) -> None:
        """With ``sketch_scout``: after a round, draw a few samples of every sketch the tree has no
        node of yet, score them with the cost model in one batch, and add the best-scored sample
        of each of the ``sketch_scout`` best sketches at the root, to be measured in the next
        round. Mutators never change a schedule's sketch, so without this a run explores only
        the sketches of its root samples (at most 16 of the attention layers' 81 by default, 3 in the
        papers)."""
        want = min(self.s.sketch_scout, self.s.measure_batch // 2)  # the tree keeps half the batch
        if not want or len(self.space.sketches) < 2 or not self.cost_model.trained:
            return
        if self.trials >= self.budget.trials or self.stop.interrupt() is not None:
            return  # no round left to measure them
        present = self._sketches_present()
        missing = [i for i in range(len(self.space.sketches)) if i not in present]
        if not missing:
            return
        per = max(1, min(SCOUT_SAMPLES, SCOUT_POOL // len(missing)))
        drawn = self._unseen(
            self.space.sample(self.rng, attempts=2, sketch=index) for index in missing for _ in range(per)
        )
        if not drawn:
            return
        scores = self.cost_model.predict(drawn)
        best: dict[int | None, tuple[float, Candidate]] = {}  # (sample() always records the sketch)
        for cand, score in zip(drawn, scores, strict=True):
            if cand.sketch not in best or score > best[cand.sketch][0]:
                best[cand.sketch] = (float(score), cand)
        for score, cand in sorted(best.values(), key=lambda x: -x[0])[:want]:
            node = self._add(self.tree.root, cand, origin=SCOUT, created_by=None, expand_model=None,
                             mutators=[SKETCH_SCOUT], score=score)  # fmt: skip
            self.scouts.append(node)

    def _unseen(self, cands: Iterable[Candidate | None]) -> list[Candidate]:
        """The candidates (drawn lazily, in order) that are neither in the tree nor drawn before."""
        unseen, seen = [], set(self.tree.hashes)
        for cand in cands:
            if cand is not None and cand.shash not in seen:
                seen.add(cand.shash)
                unseen.append(cand)
        return unseen

    def _population(self) -> list[Node]:
        """The root's warm-start seeds and its population of random samples (not the samples
        that fresh samples, scouts or random picks add later); in a later epoch (``restarts``),
        that epoch's population."""
        if self.epoch_start > 1:
            return [c for c in self.tree.root.children if c.id >= self.epoch_start][: self.s.population]
        return self.tree.root.children[: self.warm_seeds + self.s.population]

    def _sketches_present(self) -> set[int | None]:
        """The sketches the search already has: the root population's, warm seeds', scouts'
        and any measured schedule's. A fresh sample's (``fresh_samples``) counts once measured:
        the cost model alone may never pick it."""
        placed = [c for c in self.tree.root.children if c.mutators in ([SKETCH_SCOUT], [WARM_SEED])]
        measured = {n.sketch for n in self.tree.nodes[1:] if n.status is not None}
        return {c.sketch for c in [*self._population(), *placed]} | measured

    def _refine(self) -> None:
        """With ``refine``: after a round, mutate the fastest measured nodes (one random mutator
        each, as MetaSchedule's evolutionary search mutates its best measured schedules), score
        the mutants with the trained cost model in one batch, and add the best
        ``measure_batch`` of them as children of the nodes they came from: the next round's
        batch then weighs the incumbents' neighbourhoods against the tree's own nodes. With
        more than one generation (``refine_generations``; unset: by the kernel's tiled stages)
        the budget is split over generations, each mutating the best-scored of the one before
        (a hill climb on the cost model, mutators accumulating).

        With ``llm_refine`` (LLM strategies): an LLM first proposes a move for each of that many
        of the fastest nodes (:meth:`_refine_proposals`), and every other mutant of such a node
        applies the proposal's mutators (its directed move, once) instead of one of the prior's:
        the cost model ranks the LLM's mutants among the prior's where the batch is decided, and
        those kept are the LLM's nodes (origin ``llm-refine``). A proposal is judged (hit rate,
        never course alteration: the prior's mutants stand beside the model's) by its best-scored
        kept mutant, against its parent scored again in the same batch; one with nothing kept is
        not scored, and one whose mutators never applied is the model's failure."""
        if not self.s.refine or not self.cost_model.trained:
            return
        fastest = self._refine_parents()
        if not fastest:
            return
        asked = self._refine_proposals(fastest)
        by: dict[str, Proposal] = {}  # a mutant's hash -> the LLM proposal it applied
        pool: list[_Refined] = []
        parents: list[_Refined] = [(n, n.candidate, [], n.predicted) for n in fastest]
        seen = set(self.tree.hashes)
        if self.s.refine_fresh:
            # MetaSchedule's evolutionary search starts every round from its best measured
            # schedules and random samples of the whole design space: the best-scored samples
            # join the parents (and, unmutated, the pool) as candidates for new root children
            fresh = self._unseen(self.space.sample(self.rng) for _ in range(self.s.refine_fresh))
            if fresh:
                scores = self.cost_model.predict(fresh)
                ranked = sorted(zip(fresh, scores, strict=True), key=lambda x: -x[1])
                places = max(len(fastest), self.s.measure_batch)
                top: list[_Refined] = [(self.tree.root, c, [], float(s)) for c, s in ranked[:places]]
                seen.update(c.shash for c in fresh)
                parents += top
                pool += top
        generations = max(1, self.s.generations(self.space.tiled_stages))
        for g in range(generations):
            count = self.s.refine // generations + (self.s.refine % generations if g == 0 else 0)
            born: list[tuple[Node, Candidate, list[str]]] = []
            if g == 0:
                for node, asking in asked.items():  # a directed move: its one child
                    cand = self._directed(node, asking) if asking.move is not None else None
                    if cand is not None and cand.shash not in seen:
                        seen.add(cand.shash)
                        born.append((node, cand, [asking.move.label]))
                        by[cand.shash] = asking
            for i in range(count):
                node, cand, moves, _ = parents[i % len(parents)]
                proposal = asked.get(node) if g == 0 and (i // len(parents)) % 2 else None
                trace = None
                if proposal is not None:
                    trace, names = self._apply(cand.trace, proposal.mutators)
                if trace is None:  # the prior's move (also where the proposal's mutators did not apply)
                    proposal = None
                    names = [random_mutator(self.space.mutator_probs, self.rng)]
                    trace = self.space.mutate(cand.trace, names[0], self.rng)
                child = self.space.realize(trace, self.rng, unless=seen) if trace is not None else None
                if child is not None and child.shash not in seen:
                    seen.add(child.shash)
                    child.sketch = cand.sketch  # mutators change decisions, never the sketch
                    born.append((node, child, [*moves, *names]))
                    lineage = proposal or by.get(cand.shash)  # a later generation's mutant of an LLM's
                    if lineage is not None:
                        by[child.shash] = lineage
            if not born:
                break
            # (the asked parents scored again in the same batch: their LLM mutants are judged against them)
            rescored = list(asked) if g == 0 else []
            scores = self.cost_model.predict([*(c for _, c, _ in born), *(n.candidate for n in rescored)])
            for node, score in zip(rescored, scores[len(born) :], strict=True):
                node.predicted = float(score)
            scored = [(n, c, m, float(s)) for (n, c, m), s in zip(born, scores[: len(born)], strict=True)]
            pool += scored
            scored.sort(key=lambda x: -x[3])
            parents = scored[: max(len(fastest), 4 * self.s.measure_batch)]
        pool.sort(key=lambda x: -x[3])
        kept = pool[: self.s.measure_batch]
        # each proposal is judged by its best-scored kept mutant (the only one with a parent score,
        # so a resumed run and the cost review count what the run counted)
        judged = {n: (c, s) for n, c, _, s in reversed(kept) if by.get(c.shash) is not None}
        for node, cand, moves, score in kept:
            p = by.get(cand.shash)
            if p is None:
                origin = SAMPLE if node is self.tree.root and not moves else REFINE  # (refine_fresh's samples)
                self._add(node, cand, origin=origin, created_by=None, expand_model=None, mutators=moves, score=score,
                          parent_score=node.predicted)  # fmt: skip
                continue
            judge = node.predicted if judged[node][0] is cand else None
            self._add(node, cand, origin=LLM_REFINE, created_by=p.model, expand_model=p.next_model,
                      call_id=p.call_id, mutators=moves, score=score, parent_score=judge)  # fmt: skip
        for node, proposal in asked.items():
            if node in judged:
                self.policy.review(self._request(node), proposal, node.predicted, judged[node][1], escalate=False)
            elif proposal.mutators and all(p is not proposal for p in by.values()):
                self.policy.record_failure(proposal.model, "no mutator applied")

    def _refine_parents(self) -> list[Node]:
        """Refine's parents: the ``measure_batch // 2`` fastest measured nodes; with
        ``refine_per_lineage``, at most that many of one lineage (one root sample's descendants),
        the places left to the fastest of other lineages (and, where the run has too few
        lineages, to the fastest of any)."""
        measured = sorted(
            (n for n in self.tree.nodes[self.epoch_start :] if n.latency), key=lambda n: n.latency or math.inf
        )
        if not measured:
            return []  # a new epoch before its first round
        k = max(1, self.s.measure_batch // 2)
        cap = self.s.refine_per_lineage
        if not cap:
            return measured[:k]
        picked: list[Node] = []
        per: dict[int, int] = {}
        for node in measured:
            line = node.lineage().id
            if per.get(line, 0) < cap:
                per[line] = per.get(line, 0) + 1
                picked.append(node)
                if len(picked) == k:
                    return picked
        chosen = set(picked)
        picked += [n for n in measured if n not in chosen][: k - len(picked)]
        return sorted(picked, key=lambda n: n.latency or math.inf)

    def _refine_proposals(self, fastest: list[Node]) -> dict[Node, Proposal]:
        """With ``llm_refine``: an LLM's proposal for each of that many of the fastest measured
        nodes, routed and accounted as a tree expansion's call (the model the node was assigned,
        else a small one; the prompt shows the node's and its ancestors' decisions and measured
        latencies), made at once with ``llm_in_flight`` > 1. None once an LLM budget is spent,
        after the last round (nothing would measure the mutants), or for a reply with no move."""
        n = min(self.s.llm_refine, len(fastest)) if self.policy.uses_llm else 0
        if self.budget.llm_calls is not None:
            n = min(n, self.budget.llm_calls - self.policy.spent()["llm_calls"])
        if self.s.refine < 2 * max(1, self.s.measure_batch // 2):
            n = 0  # no mutant would apply a proposal (every other mutant of a parent does)
        if n <= 0 or self.trials >= self.budget.trials or self.policy.exhausted() or self.stop.interrupt():
            return {}
        # in waves, as the tree's calls in flight: at most llm_in_flight calls, one per model
        # server, each routed after the wave before was accounted (1: one call at a time)
        pending = [self._request(node) for node in fastest[:n]]
        proposals: dict[Node, Proposal] = {}
        while pending:
            wave: list[ExpansionRequest] = []
            models: set[str | None] = set()
            for request in pending:
                model = self.policy.route(request)
                if len(wave) < self.s.llm_in_flight and model not in models:
                    models.add(model)
                    wave.append(request)
            for request, proposal in zip(wave, self.policy.propose_many(wave), strict=True):
                proposals[request.leaf] = proposal
            pending = [r for r in pending if r.leaf not in proposals]
        return {node: p for node, p in proposals.items() if p.mutators or p.move is not None}

    def _reward_measured(self, nodes: list[Node]) -> None:
        """Back-propagate what was measured: best latency so far / the node's latency (1 for the
        best, 0 for a failed candidate), on the same scale as the cost model's scores."""
        best = self.best_latency
        for node in nodes:
            reward = best / node.latency if best and node.latency else 0.0
            self.sink.emit(ev.Backpropagated(backpropagate(node, reward), reward))

    # -- the loop --------------------------------------------------------------------------------
    def _progress(self) -> None:
        spent = self.policy.spent()
        self.sink.emit(
            ev.Progress(
                trials=self.trials,
                trials_budget=self.budget.trials,
                expansions=self.expansions,
                nodes=len(self.tree) - 1,
                best_latency_s=self.best.latency if self.best else None,
                elapsed_s=self.stop.elapsed(),
                llm_calls=spent["llm_calls"],
                usd=spent["usd"],
                evaluations=self.cost_model.evaluations,
                measure_s=round(self.measure_s, 3),
                coarse=self.coarse,
                sketches=self.sketches_measured,
                sketches_total=len(self.space.sketches),
            )
        )

    @property
    def sketches_measured(self) -> int:
        """How many of the design space's sketches have a schedule measured correctly."""
        return len({n.sketch for n in self.tree.nodes[1:] if n.status == "ok" and n.sketch is not None})

    def _stop_reason(self) -> str | None:
        return self.stop.reason(trials=self.trials, **self.policy.spent())

    def _init_population(self, label: str | None = None) -> None:
        want = len(self.tree.root.children) + self.s.population  # beside any warm-start seeds
        # with sketch_scout: the samples come from distinct sketches (beside warm seeds'), as many as there are
        order = []
        if self.s.sketch_scout:
            taken = {c.sketch for c in self.tree.root.children}
            order = [int(i) for i in self.rng.permutation(len(self.space.sketches))]
            order = [i for i in order if i not in taken] or order
        for i in range(self.s.population * 4):
            if len(self.tree.root.children) >= want:
                break
            cand = self.space.sample(self.rng, sketch=order[i % len(order)] if order else None)
            if cand is None or cand.shash in self.tree.hashes:
                continue
            self._add(self.tree.root, cand, origin=SAMPLE, created_by=None, expand_model=None,
                      mutators=[label] if label else [], score=self._score(cand))  # fmt: skip

    @property
    def epoch(self) -> int:
        """The epoch the trials measured so far call for (``restarts``: the trial budget split
        into restarts + 1 equal parts); 0 throughout without restarts."""
        return min(self.s.restarts, self.trials * (self.s.restarts + 1) // max(1, self.budget.trials))

    def _restart(self) -> None:
        """With ``restarts``: once the trials reach the next epoch, draw a new root population and
        search only the nodes from there on: the UCT descends into the new samples alone, refine
        mutates the epoch's fastest, and the batches are picked among its nodes. The cost model
        (trained on every record), the set of schedules already in the tree and the best so far
        carry over; the earlier epochs' nodes stay in the tree, measured or not."""
        if self.epoch <= self.epochs_started or self.trials >= self.budget.trials:
            return
        self.epochs_started = self.epoch
        self.epoch_start = len(self.tree)
        self.scouts = []
        self._init_population(RESTART_SAMPLE)

    def warm_start(self, warm: WarmStart) -> WarmReport:
        """Before the first round: train the cost model on earlier runs' records (other kernels in
        their own design spaces, this kernel in its own) and place this kernel's fastest earlier
        schedules at the root, unmeasured: the first round measures them again here."""
        report = WarmReport()
        others, same = warm.split(self.space.spec)
        for spec, records in others.values():
            try:
                space = SearchSpace(spec, self.space.target_name)
            except Exception as exc:  # noqa: BLE001 - a kernel this TVM cannot build any more
                report.notes.append(f"{spec.label}: {type(exc).__name__}")
                report.skipped += len(records)
                continue
            self._pretrain(space, records, report)
        if same:
            loaded = self._pretrain(self.space, same, report)
            for cand in loaded[: warm.seeds]:
                if cand.shash not in self.tree.hashes:
                    cand.sketch = self.space.sketch_of(cand)
                    self._add(self.tree.root, cand, origin=WARM, created_by=None, expand_model=None,
                              mutators=[WARM_SEED], score=self._score(cand))  # fmt: skip
                    report.seeded += 1
        self.warm_seeds = report.seeded
        report.kernels = len(others) + (1 if same else 0)
        return report

    def _pretrain(self, space: SearchSpace, records, report: WarmReport) -> list[Candidate]:
        cands, latencies = [], []
        for r in records:
            try:
                cands.append(space.load(r.trace))
            except Exception:  # noqa: BLE001 - a trace of another TVM version
                report.skipped += 1
                continue
            latencies.append(r.latency_s)
        self.cost_model.update(cands, latencies, space=space)
        report.records += len(cands)
        return cands

    def restore(self, state: SavedState) -> None:
        """Rebuild the tree, counters, best schedule, cost model and policy statistics."""
        for saved in sorted(state.nodes, key=lambda n: n.node_id):
            parent = self.tree.nodes[saved.parent_id or 0]
            cand = self.space.load_saved(saved.trace or [], saved.node_id)
            if parent is self.tree.root:  # a root sample's sketch, from its instructions; passed down
                cand.sketch = self.space.sketch_of(cand)
            node = self.tree.add(
                parent,
                cand,
                created_by=saved.created_by,
                expand_model=saved.expand_model,
                mutators=saved.mutators,
                predicted=saved.predicted,
                origin=saved.origin,
            )
            if node.id != saved.node_id:
                raise ValueError(f"saved node ids are not dense: expected {node.id}, got {saved.node_id}")
            node.shash = node.candidate.shash
            self.tree.hashes.add(node.shash)
            node.visits, node.value = saved.visits, saved.value
            node.latency, node.status = saved.latency, saved.status
            node.fail_streak, node.dead = saved.fail_streak, saved.dead
        root = self.tree.root
        self.warm_seeds = sum(c.mutators == [WARM_SEED] for c in root.children)
        # restarts: each later epoch's population is one block of consecutive restart samples
        restarted = [c.id for c in root.children if c.mutators == [RESTART_SAMPLE]]
        blocks = [i for k, i in enumerate(restarted) if k == 0 or restarted[k - 1] != i - 1]
        self.epochs_started = len(blocks)
        self.epoch_start = blocks[-1] if blocks else 1
        self.scouts = [c for c in root.children if c.mutators == [SKETCH_SCOUT] and c.status is None]
        root.visits = sum(c.visits for c in root.children)
        root.value = sum(c.value for c in root.children)
        self.expansions = root.visits
        self.trials = state.trials
        self.coarse = state.coarse
        measured = [n for n in self.tree.nodes[1:] if n.status is not None]
        ok = [n for n in measured if n.status == "ok" and n.latency]
        self.best = min(ok, key=lambda n: n.latency or math.inf) if ok else None
        self.history = list(state.history)
        if measured:
            self.cost_model.update([n.candidate for n in measured], [n.latency for n in measured])
        self.policy.restore(state)

    def _select(self) -> Node | None:
        return select(
            self.tree,
            first=self.epoch_start,
            branching=self.s.branching,
            lam=self.s.lam,
            c=self.s.c,
            params=self.params,
            rng=self.rng,
            max_depth=self.s.max_depth,
        )

    def _in_flight(self, room: int) -> list[tuple[Node, Proposal | None]]:
        """Up to ``llm_in_flight`` leaves to expand now, each with its proposal, the LLM calls
        made at once. Each selection adds a virtual visit (no reward) to the leaf's path, so the
        next selection prefers other paths; a leaf selected again gets another and is passed
        over, as is a leaf whose model already has a call in the batch (one call per model
        server: at most as many calls as the fleet has models). The LLM call budget caps the
        batch; a USD budget may be overrun by the calls of the last batch. Virtual visits are
        taken back before the leaves are expanded, in selection order."""
        n = min(room, self.s.llm_in_flight)
        if self.budget.llm_calls is not None:
            n = min(n, max(1, self.budget.llm_calls - self.policy.spent()["llm_calls"]))
        picked: dict[Node, ExpansionRequest] = {}  # in selection order
        visited: list[Node] = []  # one entry per virtual visit
        models: set[str] = set()
        for _ in range(4 * n):
            if len(picked) >= n:
                break
            leaf = self._select()
            if leaf is None:
                break
            visited.append(leaf)
            for node in leaf.path():
                node.visits += 1
            if leaf in picked:
                continue
            request = self._request(leaf)
            model = self.policy.route(request) if leaf.depth > 1 else None
            if model is not None and model in models:
                continue
            if model is not None:
                models.add(model)
            picked[leaf] = request
        for leaf in visited:
            for node in leaf.path():
                node.visits -= 1
        asked = [leaf for leaf in picked if leaf.depth > 1]
        replies = dict(zip(asked, self.policy.propose_many([picked[leaf] for leaf in asked]), strict=True))
        return [(leaf, replies.get(leaf)) for leaf in picked]

    def run(self) -> SearchResult:
        if len(self.tree) - 1 == self.warm_seeds:
            self._init_population()  # a new run (its root holds at most warm-start seeds)
        concurrent = self.s.llm_in_flight > 1 and self.policy.uses_llm
        while True:
            reason, exhausted = None, False
            done = 0
            while done < self.expansions_per_round:
                reason = self._stop_reason()
                if reason is not None:
                    break
                if concurrent:
                    batch = self._in_flight(self.expansions_per_round - done)
                else:  # the papers' loop: select, expand, back-propagate, one leaf at a time
                    leaf = self._select()
                    batch = [] if leaf is None else [(leaf, None)]
                if not batch:
                    exhausted = True
                    break
                for leaf, proposal in batch:
                    self.expand(leaf, proposal)
                done += len(batch)
            # the prior's expansions beside the round's (prior_expansions): the tree grows as
            # mcts-random's does, and where LLMs expand, their children are added to it
            for _ in range(self.prior_expansions if reason is None and not exhausted else 0):
                leaf = self._select()
                if leaf is None or self._stop_reason() is not None:
                    break
                self.expand(leaf, prior=True)
            # what the policy already proposed is still measured when an LLM budget ran out
            measured = 0
            if self.stop.interrupt() is None and self.trials < self.budget.trials:
                measured = self.measure_round()
                self._restart()
                self._fresh_root_child()
                self._scout_sketches()
                self._refine()
            self._progress()
            reason = reason or self._stop_reason()
            if reason is None and exhausted and measured == 0:
                reason = "search space exhausted"
            if reason is not None:
                break
        return SearchResult(
            best=self.best,
            best_latency=self.best.latency if self.best else None,
            trials=self.trials,
            stop_reason=reason,
            elapsed_s=self.stop.elapsed(),
            tree=self.tree,
            history=list(self.history),
            expansions=self.expansions,
            evaluations=self.cost_model.evaluations,
            extractions=self.cost_model.extractions,
            measure_s=self.measure_s,
            build_s=self.build_s,
            coarse=self.coarse,
            sketches=self.sketches_measured,
            sketches_total=len(self.space.sketches),
        )
