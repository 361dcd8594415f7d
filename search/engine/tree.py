"""The shared search tree: nodes, the LLM-aware UCT score, selection, back-propagation.

ALGORITHM.md section 2. A node holds one schedule; its statistics are visits ``N`` and total
reward ``W``. ``expand_model`` is the model that will expand it (chosen by the call that made
it); ``phi`` of that model biases selection towards small models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


class Node:
    __slots__ = (
        "id",
        "parent",
        "children",
        "depth",
        "candidate",
        "shash",
        "created_by",
        "expand_model",
        "mutators",
        "visits",
        "value",
        "predicted",
        "latency",
        "status",
        "fail_streak",
        "dead",
        "sketch",
        "origin",
    )

    def __init__(
        self,
        id: int,
        parent: Node | None,
        candidate: Any = None,
        *,
        shash: str = "",
        created_by: str | None = None,
        expand_model: str | None = None,
        mutators: Iterable[str] = (),
        predicted: float = 0.0,
        origin: str | None = None,
    ):
        self.id = id
        self.parent = parent
        self.children: list[Node] = []
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.candidate = candidate
        self.shash = shash
        self.created_by = created_by
        self.expand_model = expand_model
        self.mutators = list(mutators)
        self.visits = 0
        self.value = 0.0
        self.predicted = predicted
        self.origin = origin  # what made it (events.ORIGINS)
        #: the design-space sketch the node's schedule descends from: a root child's sample's
        #: (``candidate.sketch``), below that its parent's (mutators change decisions, never the
        #: sketch); None where unknown
        self.sketch: int | None = None
        if parent is not None:
            self.sketch = getattr(candidate, "sketch", None) if parent.parent is None else parent.sketch
        self.latency: float | None = None
        self.status: str | None = None  # None until measured
        self.fail_streak = 0
        self.dead = False
        if parent is not None:
            parent.children.append(self)

    @property
    def mean(self) -> float:
        return self.value / self.visits if self.visits else 0.0

    def path(self) -> list[Node]:
        """This node and its ancestors, up to the root."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def lineage(self) -> Node:
        """The root's child this node descends from (itself at depth 1; the root itself): the
        root sample, scout or warm seed whose mutants it is."""
        node = self
        while node.parent is not None and node.parent.parent is not None:
            node = node.parent
        return node

    def __repr__(self) -> str:
        return f"Node({self.id}, depth={self.depth}, N={self.visits}, W={self.value:.3f})"


class Tree:
    def __init__(self) -> None:
        self.root = Node(0, None)
        self.nodes: list[Node] = [self.root]
        self.hashes: set[str] = set()

    def add(self, parent: Node, candidate: Any, **kwargs) -> Node:
        node = Node(len(self.nodes), parent, candidate, **kwargs)
        self.nodes.append(node)
        if node.shash:
            self.hashes.add(node.shash)
        return node

    def __len__(self) -> int:
        return len(self.nodes)


def phi(model: str | None, params: Mapping[str, float]) -> float:
    """1 for the smallest model of the fleet, 0 for the largest, log-linear between."""
    if model is None or model not in params or len(params) < 2:
        return 0.0
    logs = {m: math.log(p) for m, p in params.items()}
    hi, lo = max(logs.values()), min(logs.values())
    if hi == lo:
        return 0.0
    return min(1.0, max(0.0, (hi - logs[model]) / (hi - lo)))


def uct_score(child: Node, parent_visits: int, *, lam: float, c: float, phi_value: float) -> float:
    """(1 - lam) W/N + lam phi + c sqrt(ln N_parent / N); infinite for an unvisited child."""
    if child.visits == 0:
        return math.inf
    exploit = child.value / child.visits
    explore = c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)
    return (1.0 - lam) * exploit + lam * phi_value + explore


def best_child(node: Node, *, lam: float, c: float, params: Mapping[str, float], first: int = 1) -> Node | None:
    """The child selection takes: unvisited first (smaller model first), else the highest score.
    Children of ids below ``first`` (an earlier epoch's, at the root) are passed over."""
    live = [ch for ch in node.children if not ch.dead and ch.id >= first]
    if not live:
        return None
    unvisited = [ch for ch in live if ch.visits == 0]
    if unvisited:
        return max(unvisited, key=lambda ch: phi(ch.expand_model, params))
    models = {ch.expand_model for ch in live}
    effective_lam = lam if len(models) > 1 else 0.0
    return max(
        live,
        key=lambda ch: uct_score(ch, node.visits, lam=effective_lam, c=c, phi_value=phi(ch.expand_model, params)),
    )


def select(
    tree: Tree,
    *,
    branching: int,
    lam: float,
    c: float,
    params: Mapping[str, float],
    rng: np.random.Generator,
    max_depth: int = 500,
    first: int = 1,
) -> Node | None:
    """Descend from the root to the node to expand; None when the whole tree is exhausted.
    With ``first`` (a later epoch's first node id) only the root children from it on are
    descended into (every node below them is newer)."""
    node = tree.root
    while True:
        if node is tree.root:
            live = [ch for ch in node.children if not ch.dead and ch.id >= first]
            if not live:
                return None
            unvisited = [ch for ch in live if ch.visits == 0]
            if unvisited:
                return unvisited[int(rng.integers(len(unvisited)))]
        elif not node.dead and node.depth < max_depth and (node.visits == 0 or len(node.children) < branching):
            return node
        nxt = best_child(node, lam=lam, c=c, params=params, first=first)
        if nxt is None:
            # a full node whose children are all dead ends is a dead end too
            node.dead = True
            node = tree.root
            continue
        node = nxt


def backpropagate(node: Node, reward: float) -> list[int]:
    """N += 1 and W += reward on the node and every ancestor; returns the path's ids."""
    ids = []
    for n in node.path():
        n.visits += 1
        n.value += reward
        ids.append(n.id)
    return ids
