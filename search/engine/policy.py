"""Expansion policies: who proposes the next joint action, and how.

The search loop asks a policy for a :class:`Proposal` (an ordered list of mutator names and
the model that will expand the child) through one small interface. ``RandomPolicy`` (the
``mcts-random`` strategy) samples a mutator by the target's probabilities; the LLM policies
(``colt``, ``single-llm``) implement the same interface and add accounting and course
alteration through :meth:`ExpansionPolicy.review`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass
class Proposal:
    """A joint action: mutators to apply in order, and the model that expands the child."""

    mutators: list[str]
    next_model: str | None = None
    model: str | None = None  # who proposed it (None: a random move)
    escalation: bool = False


@dataclass
class ExpansionRequest:
    """What a policy sees when asked to expand a leaf."""

    leaf: Any  # tree.Node
    model: str | None  # the model assigned to expand the leaf
    mutator_probs: Mapping[str, float]
    trials_used: int
    trials_budget: int
    describe: Any = None  # callable(node) -> dict of decisions, for prompts
    extra: dict = field(default_factory=dict)


class ExpansionPolicy:
    """The interface every strategy's policy implements. Subclasses override what they need."""

    name = "policy"

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

    def record_failure(self, model: str | None, reason: str) -> None:
        """A proposal of ``model`` applied no mutator or produced an invalid/duplicate child."""

    def review(self, request: ExpansionRequest, proposal: Proposal, parent_score: float, child_score: float) -> Proposal | None:
        """After a child is scored: return a replacement proposal (course alteration) or None."""
        return None

    def exhausted(self) -> str | None:
        """A reason to stop (an LLM budget spent), or None."""
        return None

    def spent(self) -> dict:
        return {"llm_calls": 0, "usd": 0.0}

    def summary(self) -> dict:
        return {}


class RandomPolicy(ExpansionPolicy):
    """One mutator drawn by the target's probabilities; no model involved."""

    name = "random"

    def propose(self, request: ExpansionRequest) -> Proposal:
        return Proposal(mutators=[random_mutator(request.mutator_probs, self.rng)])


def random_mutator(probs: Mapping[str, float], rng: np.random.Generator) -> str:
    names = list(probs)
    p = np.array([probs[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]
