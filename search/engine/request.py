"""The run request: one validated value for everything a run is asked to do.

The launch form, the command line, the JSON API and ``resume`` all build a
:class:`RunRequest` with :func:`build_request` from the same JSON-shaped document; services,
the worker and the engine take it; the database stores it once. Every number a user can set
has one limit, declared once in :data:`LIMITS`, and one message when it is outside it.

The document (what :meth:`RunRequest.to_dict` writes and :func:`build_request` reads)::

    {"kernel": "gemm-512" | {"op": ..., "shape": {...}, "dtype": ...},
     "target": "llvm", "strategy": "colt",
     "budget": {"trials": 64, "llm_calls": null, "usd": null, "wall_s": null},
     "settings": {"lam": 0.2, "c": 1.414, "branching": 2, ...},
     "timing": {"number": 3, "repeat": 5, "min_repeat_ms": 100, "timeout_s": 30.0},
     "models": ["small", "large"]}       # names from the server's fleet (form, CLI, API)

A stored run writes ``"fleet": [{...model definitions...}]`` instead of ``models`` and is read
back with ``build_request(doc, stored=True)``; a user never supplies definitions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .llm import Fleet, FleetError
from .measure import MeasureConfig
from .workloads import LIBRARY, KernelSpec, SpecError, validate


class RequestError(ValueError):
    """One or more bad values; ``errors`` maps each field (``budget.trials``) to its message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


@dataclass(frozen=True)
class Budget:
    """When a run stops: the first of these that is spent (None: no limit)."""

    trials: int = 64
    llm_calls: int | None = None
    usd: float | None = None
    wall_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchSettings:
    # random design-space samples at the root (the papers, and the paper preset: 3). Unmeasured
    # until the cost model ranks them into a measurement round; each sample's sketch is what the
    # tree can then search. 16 against 3 in same-seed pairs on one machine: 1.10x (znver4, 8
    # pairs), 1.34x and 1.24x (two emeraldrapids machines, 6 pairs each), rescuing the seeds whose
    # three samples all miss a good sketch (3.8x, 5.1x), with fewer LLM calls (docs/benchmarks.md)
    population: int = 16
    # the root population is measured before any other node: the first rounds take every root
    # sample (and warm seed) still unmeasured, best-scored first, so a run starts from the best of
    # its samples rather than from whichever few of them (or of their first mutants) a random pick
    # drew (FLUX attention's 16 samples per seed ran 5-170 ms, each seed holding one to five within
    # 1.6x of its best). Measured on the attention layers (rocketlake, 10 same-seed pairs): 0.91x,
    # mcts-random 0.97x over 8 (0.50-1.43x), colt 0.71x over 2: the best sample's neighbourhood is
    # not the best one, and a run that starts there stays there (docs/benchmarks.md). Off: the papers
    population_first: bool = False
    # the trial budget split into this many + 1 epochs; each new epoch draws a new root population
    # and searches only its own nodes (the UCT's descent, refine's parents, the measurement
    # batches), while the cost model, trained on every epoch's records, carries what was learned:
    # a run climbs two or more basins instead of one. Aimed at the attention layers, whose result
    # is decided by which basin refine climbs. Measured at 1 (znver3, same-seed pairs on the
    # attention layers): mcts-random 0.81x over 6 (0.39-1.49x), the slowest seed no faster, colt
    # 1.00x over 2 (1.44x, 0.70x): the second half restarts the climb that the default runs
    # were still making at trials 33-64. The stored rows' curves gave little to expect
    # (bench/halves.py: two independent 32-trial runs against one of 64, 1.04x over the 14 attention
    # cells of today's formulation, 0.80x and 0.99x on this machine's; docs/benchmarks.md). Only with
    # a trial budget (a wall-clock run's unbounded trials are never split). 0: one epoch (the papers)
    restarts: int = 0
    branching: int = 2  # B
    max_depth: int = 500
    lam: float = 0.2  # model-balance weight
    c: float = math.sqrt(2)
    rollouts: int = 1
    rollout_depth: int = 2
    measure_batch: int = 8
    expansions_per_round: int | None = None  # None: 2 x measure_batch, or 1 x when LLMs expand
    course_alteration_k: int = 2  # K: escalate on every K-th consecutive small-model regression
    epsilon: float = 0.05  # share of each batch picked at random
    dead_end_failures: int = 5
    mutator_retries: int = 3
    seed: int = 0
    # beyond the papers: the levers (PRESETS["paper"] turns them off: the papers' search exactly).
    # The defaults are the combination measured best (docs/benchmarks.md, "Search levers")
    variants: int = 32  # screening: children realized per expansion; the cost model keeps the best
    # of an LLM expansion's screening attempts (with variants > 1), the share that applies one
    # mutator drawn from the target's prior (as mcts-random and MetaSchedule do) instead of the
    # model's proposal: the cost model arbitrates between the model's idea and the prior's; 0:
    # every attempt is the model's. The node stays the model's (its hit rate counts it)
    prior_variants: float = 0.0
    measured_reward: bool = True  # a measured node back-propagates best latency / its latency
    fresh_samples: int = 0  # per measurement round: design-space samples screened, the best joins the root
    # per measurement round: sketches the tree has no node of yet, each represented by the best
    # of a few samples the cost model scores, that join the root and are measured in the next
    # round (mutators never change a schedule's sketch: with 3 root samples, the papers', a run sees at
    # most 3 of the attention layers' 81 sketches; with the default 16, at most 16);
    # also draws the root population from distinct sketches.
    # 0: off (the papers)
    sketch_scout: int = 0
    refine: int = 512  # per measurement round: mutants of the fastest measured nodes screened, the best join
    # refine's budget split over generations, each mutating the best-scored of the last (a hill
    # climb on the cost model, moves of several mutators, as MetaSchedule's evolution). None: by
    # kernel (REFINE_GENERATIONS): 4 where the design space tiles several stages (the MLP, attention),
    # whose better schedules change several stages' decisions together, 1 where it tiles one (a
    # matmul, a conv), where 4 lost (docs/benchmarks.md)
    refine_generations: int | None = None
    # per measurement round: random design-space samples (every sketch) the cost model scores; the
    # best-scored join refine's parents beside the fastest measured schedules, as MetaSchedule's
    # evolutionary search seeds each round with its best measured schedules and random samples;
    # a chosen sample or mutant of one joins the root. 0: off (refine mutates measured schedules only)
    refine_fresh: int = 0
    # refine's parents, the fastest measured schedules, at most this many from one lineage (the
    # descendants of one root sample): the others are the fastest of other lineages, so refine
    # mutates more than one neighbourhood once a run's fastest schedules are all one's mutants
    # (a run whose best stops improving for rounds is stuck in one). 0: off (the fastest, whatever
    # their lineage). Measured at 2 (mcts-random, the conv, 6 same-seed pairs): 0.87x, off
    refine_per_lineage: int = 0
    # per measurement round: expansions beside the round's ``expansions_per_round`` that apply one
    # mutator drawn from the target's prior, with no LLM call, at leaves the UCT selects (their
    # children go to a small model, as screening's nodes do). None: by strategy (PRIOR_EXPANSIONS):
    # 8 where LLMs expand the tree (8 expansions per round, one call each), so the tree grows by as
    # many nodes per round as mcts-random's 16, half of them the LLMs' (colt had measured 0.84-0.94x
    # mcts-random with half its expansions; docs/benchmarks.md); 0 for mcts-random (its 16 are the
    # prior's already). 0: off (the papers)
    prior_expansions: int | None = None
    # the children of the prior's expansions keep the model their leaf was assigned (the one an
    # LLM named to expand that subtree), instead of going to a small model as screening's nodes do:
    # with 8 of the prior's expansions per round, half the tree had no model assigned, and the
    # largest model's share of calls fell from 19% to 11% (docs/benchmarks.md). Off: a small model
    prior_keeps_model: bool = False
    # LLM strategies: the mutators a model names are alternatives, not a sequence: its child applies
    # one of them (the first that applies), and each of screening's variants one in turn, so a child
    # differs from its leaf by one move, as the prior's children do. The local models copy the
    # prompt's example of two mutators or name all four (tests/data/llm_replies.json), and their
    # nodes, two to four random moves from the leaf, set a new best in 9% of their measurements
    # against 21% for the prior's single moves (127 colt rows). Measured with llm_places 2 (znver4,
    # 6 same-seed pairs): 0.89x, their nodes' new bests 0 of 75 measurements -> 3 of 77
    # (docs/benchmarks.md). Off: in sequence (the papers)
    single_mutator: bool = False
    # per measurement round: batch places given to new random design-space samples, measured
    # unscreened (MetaSchedule measures random samples until its cost model holds 100 records). 0: off
    random_picks: int = 0
    # per measurement round: batch places kept for the best-scored unmeasured nodes that an LLM
    # proposed (colt, single-llm), ahead of refine's mutants. With refine on, those mutants of the
    # fastest measured schedules outscore the tree's children, so a colt run measured none of its
    # LLMs' nodes (bench rows' origins, docs/benchmarks.md). 0: off (every place by score)
    llm_places: int = 0
    # per measurement round (LLM strategies): of refine's parents, the fastest measured schedules,
    # this many get an LLM's proposal (one call each), and every other mutant of such a parent applies
    # it instead of the prior's mutator: the models' moves compete with refine's where the batch is
    # decided, at the incumbents (their tree expansions, at UCT's leaves, were outscored). 0: off.
    # Measured at 4 (colt, znver5, 18 same-seed pairs): 1.06x (MoE 1.24x, conv 0.94x, MLP 1.04x), 1.23x
    # the wall-clock; the LLMs' mutants set new bests as often as refine's own (docs/benchmarks.md)
    llm_refine: int = 0
    # measured records before the cost model's scores are used; random scores until then (MetaSchedule's
    # XGBModel: 100, so its evolutionary search at 64 trials never uses its model). 0: from the first
    # record (the papers). 16: the first two rounds of 8 pick at random; a model of 8 records ranks the
    # unmeasured root samples worse than chance (bench/costmodel.py). 16 against 0 in same-seed pairs
    # on one machine: 1.10x over 27 (znver5, mcts-random@64: MoE 1.02x, conv 1.32x, MLP 0.99x; it
    # rescues the seeds whose first picks lead into a slow region, docs/benchmarks.md). None: by
    # strategy (MODEL_WARMUP): 16 where no LLM expands the tree, 0 where LLMs do: colt measured
    # 0.94x with 16 against 0 over 17 same-seed pairs on two machines (the conv 0.83x over 5,
    # where mcts-random gained 1.28-1.32x), the first rounds' random scores discarding what
    # screening would pick among the models' proposals
    model_warmup: int | None = None
    directed: bool = False  # LLM replies may set one decision (tile factors, unroll step, compute location)
    # a node that screening added (no call assigned it) is expanded by a small model (each small model
    # once, the smallest first, then by hit rate); off: the largest
    screened_to_small: bool = True
    # with screened_to_small: that small model is the one with the most expected hits per dollar
    # (smoothed hit rate / the price of a call at the fleet's list prices); off: the best hit rate
    cost_routing: bool = False
    # colt: the share of the calls the largest model keeps at least; a call goes to it instead of
    # the model its leaf was assigned wherever the share would otherwise fall below. The prompt asks
    # the models to keep the largest at 20% (the papers: 23-24%), which small local models do not
    # follow, and screening leaves course alteration next to nothing to correct (4 escalations in
    # 25 colt runs): with the prior's expansions the largest made a median 13% of colt's calls.
    # Measured at 0.2 against 0 (znver5, 10 same-seed pairs): 1.10x, within the seeds' noise
    # (0.35-2.09x), the share 13% -> 21%, 1.29x the USD (docs/benchmarks.md). 0: off (the papers:
    # the prompt's request alone)
    largest_share_floor: float = 0.2
    # the prompt shows the leaf's decisions and, for its parent and grandparent, only what differs
    # (the uncached part of a prompt ~320 -> ~200 tokens; local models read ~100-200 tokens/s);
    # off: every ancestor whole, as in the papers
    compact_prompt: bool = True
    # LLM calls in flight at once, for different leaves (virtual loss spreads the selection) and
    # different models (one per model server); 1: one call at a time, as in the papers
    llm_in_flight: int = 1
    # tree strategies: a candidate whose first two single runs are already this many times slower
    # than the best measured so far keeps the faster run's time and is not timed in full (number x
    # repeat runs, at least min_repeat_ms each): it will not be the best. At least 1.5, so one noisy
    # run cannot drop a contender. None: every candidate timed in full (the papers). Measured at 3: 1-3
    # of 64 candidates cut, no wall-clock saved (the cost model rarely picks one that slow; docs/benchmarks.md)
    timing_cutoff: float | None = None
    warm_start: bool = False  # opt-in: earlier runs' records pre-train the cost model and seed the root

    def to_dict(self) -> dict:
        return asdict(self)

    def warmup(self, uses_llm: bool) -> int:
        """The records the cost model must hold before its scores are used: ``model_warmup``, or
        where it is unset, the default for a strategy with or without LLMs."""
        return self.model_warmup if self.model_warmup is not None else MODEL_WARMUP[uses_llm]

    def prior(self, uses_llm: bool) -> int:
        """The prior's expansions per round: ``prior_expansions``, or where it is unset, the default
        for a strategy with or without LLMs."""
        return self.prior_expansions if self.prior_expansions is not None else PRIOR_EXPANSIONS[uses_llm]

    def generations(self, tiled_stages: int) -> int:
        """Refine's generations: ``refine_generations``, or where it is unset, the default for a
        design space that tiles that many stages (:attr:`SearchSpace.tiled_stages`)."""
        if self.refine_generations is not None:
            return self.refine_generations
        return default_generations(tiled_stages)

    @classmethod
    def paper(cls, **values: Any) -> SearchSettings:
        """The search exactly as the papers specify it (every lever off), with ``values``."""
        return cls(**{**PRESETS["paper"], **values})


#: ``model_warmup`` where a request leaves it unset, by whether LLMs expand the tree (measured in
#: same-seed pairs, docs/benchmarks.md: mcts-random 1.10x with 16 over 27; colt 0.94x over 17)
MODEL_WARMUP: dict[bool, int] = {False: 16, True: 0}

#: ``prior_expansions`` where a request leaves it unset, by whether LLMs expand the tree (measured
#: in same-seed pairs of colt, docs/benchmarks.md)
PRIOR_EXPANSIONS: dict[bool, int] = {False: 0, True: 8}

#: ``refine_generations`` where a request leaves it unset, by whether the kernel's design space
#: tiles more than one stage (measured in same-seed pairs of mcts-random, docs/benchmarks.md)
REFINE_GENERATIONS: dict[bool, int] = {False: 1, True: 4}


def default_generations(tiled_stages: int) -> int:
    """``refine_generations`` unset, for a design space that tiles that many stages."""
    return REFINE_GENERATIONS[tiled_stages > 1]


#: named starting points for the settings; a request's explicit values override its preset.
#: ``paper``: every lever beyond the papers off, the reference each lever is measured against
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {
        "population": 3,
        "population_first": False,
        "restarts": 0,
        "variants": 1,
        "prior_variants": 0.0,
        "measured_reward": False,
        "fresh_samples": 0,
        "sketch_scout": 0,
        "refine": 0,
        "refine_generations": 1,
        "refine_fresh": 0,
        "refine_per_lineage": 0,
        "prior_expansions": 0,
        "prior_keeps_model": False,
        "single_mutator": False,
        "random_picks": 0,
        "llm_places": 0,
        "llm_refine": 0,
        "model_warmup": 0,
        "directed": False,
        "screened_to_small": False,
        "cost_routing": False,
        "largest_share_floor": 0.0,
        "compact_prompt": False,
        "llm_in_flight": 1,
        "timing_cutoff": None,
    },
}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Limit:
    """The allowed values of one number: ``int`` or ``float``, within [lo, hi]
    (``lo`` excluded when ``open_lo``); ``optional`` admits None (no limit)."""

    kind: type
    lo: float
    hi: float
    optional: bool = False
    open_lo: bool = False

    def message(self, name: str) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.open_lo:
            return f"{name} must be {what} greater than {_num(self.lo)} and at most {_num(self.hi)}"
        return f"{name} must be {what} between {_num(self.lo)} and {_num(self.hi)}"

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(self.message(name))
        # compare before converting: an int of hundreds of digits has no float
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(self.message(name))
        if value < self.lo or value > self.hi or (self.open_lo and value == self.lo):
            raise ValueError(self.message(name))
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(self.message(name))
            return int(value)
        return float(value)


#: the one set of limits; the form, the CLI and the API show these messages verbatim
LIMITS: dict[str, dict[str, Limit]] = {
    "budget": {
        "trials": Limit(int, 1, 100_000),
        "llm_calls": Limit(int, 1, 1_000_000, optional=True),
        "usd": Limit(float, 0, 1_000_000, optional=True, open_lo=True),
        "wall_s": Limit(float, 1, 7 * 86_400, optional=True),
    },
    "settings": {
        "population": Limit(int, 1, 64),
        "branching": Limit(int, 1, 16),
        "max_depth": Limit(int, 1, 500),
        "lam": Limit(float, 0, 1),
        "c": Limit(float, 0, 100),
        "rollouts": Limit(int, 1, 16),
        "rollout_depth": Limit(int, 0, 16),
        "measure_batch": Limit(int, 1, 64),
        "expansions_per_round": Limit(int, 1, 4096, optional=True),
        "course_alteration_k": Limit(int, 1, 100),
        "epsilon": Limit(float, 0, 1),
        "dead_end_failures": Limit(int, 1, 100),
        "mutator_retries": Limit(int, 1, 20),
        "seed": Limit(int, 0, 2**31 - 1),
        "variants": Limit(int, 1, 256),
        "prior_variants": Limit(float, 0, 1),
        "fresh_samples": Limit(int, 0, 4096),
        "sketch_scout": Limit(int, 0, 16),
        "restarts": Limit(int, 0, 7),
        "refine": Limit(int, 0, 4096),
        "refine_generations": Limit(int, 1, 8, optional=True),
        "refine_fresh": Limit(int, 0, 4096),
        "refine_per_lineage": Limit(int, 0, 64),
        "prior_expansions": Limit(int, 0, 256, optional=True),
        "random_picks": Limit(int, 0, 64),
        "llm_places": Limit(int, 0, 64),
        "llm_refine": Limit(int, 0, 32),
        "model_warmup": Limit(int, 0, 100000, optional=True),
        "llm_in_flight": Limit(int, 1, 16),
        "largest_share_floor": Limit(float, 0, 1),
        "timing_cutoff": Limit(float, 1.5, 1000, optional=True),
    },
    "timing": {
        "number": Limit(int, 1, 1000),
        "repeat": Limit(int, 1, 1000),
        "min_repeat_ms": Limit(int, 0, 10_000),
        "timeout_s": Limit(float, 1, 3600),
    },
}


@dataclass(frozen=True)
class RunRequest:
    """What a run is asked to do. Build it with :func:`build_request`, which validates."""

    kernel: KernelSpec
    target: str = "llvm"
    strategy: str = "mcts-random"
    budget: Budget = field(default_factory=Budget)
    settings: SearchSettings = field(default_factory=SearchSettings)
    timing: MeasureConfig = field(default_factory=MeasureConfig)
    fleet: Fleet | None = None  # the LLM strategies' models (single-llm: exactly one)

    def to_dict(self) -> dict:
        return {
            "kernel": self.kernel.to_dict(),
            "target": self.target,
            "strategy": self.strategy,
            "budget": self.budget.to_dict(),
            "settings": self.settings.to_dict(),
            "timing": asdict(self.timing),
            "fleet": self.fleet.to_list() if self.fleet is not None else [],
        }

    def checked(self) -> RunRequest:
        """This request validated (for requests built in code: tests, benchmarks)."""
        doc = self.to_dict()
        del doc["fleet"]  # the models are named from this request's own fleet, as a user names them
        return build_request(doc, offered_fleet=self.fleet)

    def with_seed(self, seed: int) -> RunRequest:
        return replace(self, settings=replace(self.settings, seed=seed))


#: what a stored run that lacks a setting ran with: a run stored before the setting existed ran as
#: its value then (before ``model_warmup``, the cost model's scores were used from the first record,
#: 0; unset resolves by strategy since, MODEL_WARMUP), so resuming it goes on as it began
STORED_BEFORE: dict[str, Any] = {
    "model_warmup": 0,
    "refine_generations": 1,
    "prior_expansions": 0,
    "largest_share_floor": 0.0,
}


def _section(doc: Mapping, name: str, cls: type, errors: dict[str, str], stored: bool = False) -> Any:
    raw = doc.get(name) or {}
    if not isinstance(raw, Mapping):
        errors[name] = f"{name} must be an object"
        return cls()
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    if cls is SearchSettings and stored:
        values.update({k: v for k, v in STORED_BEFORE.items() if k not in raw})
    if cls is SearchSettings and "preset" in raw:
        preset = raw["preset"]
        if not isinstance(preset, str) or preset not in PRESETS:
            errors[f"{name}.preset"] = f"unknown preset {preset!r}; known: {', '.join(PRESETS)}"
        else:
            values.update(PRESETS[preset])
        raw = {k: v for k, v in raw.items() if k != "preset"}
    for key, value in raw.items():
        if key not in known:
            errors[f"{name}.{key}"] = f"unknown {name} field {key!r}"
            continue
        limit = LIMITS.get(name, {}).get(key)
        if stored:  # what was accepted when the run was made stays valid when limits change
            values[key] = value
            continue
        if limit is None:  # a flag such as timing.check
            if not isinstance(value, bool):
                errors[f"{name}.{key}"] = f"{key} must be true or false"
            values[key] = value
            continue
        try:
            values[key] = limit.check(key, value)
        except ValueError as exc:
            errors[f"{name}.{key}"] = str(exc)
    return cls(**values) if not any(k.startswith(f"{name}.") for k in errors) else cls()


def _kernel(value: Any) -> KernelSpec:
    if isinstance(value, KernelSpec):
        return validate(value)
    if isinstance(value, str):
        if value not in LIBRARY:
            raise SpecError(f"unknown kernel {value!r}; the library has {', '.join(LIBRARY)}")
        return LIBRARY[value]
    if isinstance(value, Mapping):
        return KernelSpec.from_dict(value)
    raise SpecError("give a kernel: a library name or an object with op, shape and dtype")


def _fleet(doc: Mapping, strategy: str, offered: Fleet | None, errors: dict[str, str], stored: bool) -> Fleet | None:
    from .strategies import get_strategy

    if not get_strategy(strategy).uses_llm:
        return None
    try:
        if stored:
            definitions = doc.get("fleet") or []
            if not isinstance(definitions, list) or not all(isinstance(m, Mapping) for m in definitions):
                raise FleetError("fleet must be a list of model definitions")
            fleet = Fleet.of(definitions)
        else:
            if offered is None:
                errors["models"] = f"strategy {strategy} needs a fleet of LLMs, and none is configured"
                return None
            names = doc.get("models")
            if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
                errors["models"] = "models must be a list of model names"
                return None
            names = list(offered.names) if names is None else names
            unknown = [n for n in names if n not in offered.names]
            if unknown:
                errors["models"] = (
                    f"unknown model(s) {', '.join(map(repr, unknown))}; the fleet has {', '.join(offered.names)}"
                )
                return None
            if strategy == "colt" and len(names) < 2:
                errors["models"] = "colt needs at least two models; for one model use single-llm"
                return None
            if not names:
                errors["models"] = f"strategy {strategy} needs a model"
                return None
            fleet = Fleet(tuple(m for m in offered.models if m.name in names))
    except FleetError as exc:
        errors["models"] = str(exc)
        return None
    if strategy == "single-llm" and len(fleet.models) > 1:
        fleet = fleet.only(fleet.largest.name)
    return fleet


def build_request(doc: Mapping[str, Any], *, offered_fleet: Fleet | None = None, stored: bool = False) -> RunRequest:
    """Validate a request document; :class:`RequestError` lists every bad value at once.

    From a user (the form, the CLI, the API) models are *named* and resolved in
    ``offered_fleet``, the server's own definitions: a user never supplies an endpoint, a price
    or the name of a key variable. ``stored=True`` reads back what this code wrote (a stored
    run, a request built in code): its fleet definitions are taken as they are, and its values
    are not held to limits that may have changed since."""
    from .compiler import TargetError, target_kind
    from .strategies import STRATEGIES

    errors: dict[str, str] = {}
    kernel = None
    try:
        kernel = _kernel(doc.get("kernel"))
    except SpecError as exc:
        errors["kernel"] = str(exc)
    target = doc.get("target", "llvm")
    try:
        if not isinstance(target, str):
            raise TargetError(f"unknown target {target!r}; use llvm, cuda or cuda-smXY (e.g. cuda-sm90)")
        target_kind(target)
    except TargetError as exc:
        errors["target"] = str(exc)
    strategy = doc.get("strategy", "mcts-random")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        errors["strategy"] = f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}"
    budget = _section(doc, "budget", Budget, errors, stored)
    settings = _section(doc, "settings", SearchSettings, errors, stored)
    timing = _section(doc, "timing", MeasureConfig, errors, stored)
    fleet = _fleet(doc, strategy, offered_fleet, errors, stored) if "strategy" not in errors else None
    unknown = set(doc) - {"kernel", "target", "strategy", "budget", "settings", "timing", "models"}
    if stored:
        unknown.discard("fleet")
    for key in sorted(unknown):
        errors[key] = f"unknown request field {key!r}"
    if errors or kernel is None:
        raise RequestError(errors)
    return RunRequest(
        kernel=kernel, target=target, strategy=strategy, budget=budget, settings=settings, timing=timing, fleet=fleet
    )


def llm_budget_reason(budget: Budget, llm_calls: int, usd: float) -> str | None:
    """The reason to stop when an LLM budget is spent, else None."""
    if budget.llm_calls is not None and llm_calls >= budget.llm_calls:
        return "LLM call budget spent"
    if budget.usd is not None and usd >= budget.usd:
        return "USD budget spent"
    return None


CANCELLED = "cancelled"
WALL_CLOCK_SPENT = "wall-clock budget spent"
TRIALS_SPENT = "trial budget spent"


class StopRule:
    """One stop rule for every strategy: trials, cancel, wall-clock, LLM calls, USD.

    The clock starts when the rule is made (before the baseline is measured): the wall-clock
    budget is the user's time, all of it."""

    def __init__(
        self,
        budget: Budget,
        should_stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.budget = budget
        self.should_stop = should_stop
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def interrupt(self) -> str | None:
        """A reason to stop at once, whatever has been measured: cancel or wall-clock."""
        if self.should_stop():
            return CANCELLED
        if self.budget.wall_s is not None and self.elapsed() >= self.budget.wall_s:
            return WALL_CLOCK_SPENT
        return None

    def reason(self, *, trials: int, llm_calls: int = 0, usd: float = 0.0) -> str | None:
        if trials >= self.budget.trials:
            return TRIALS_SPENT
        return self.interrupt() or llm_budget_reason(self.budget, llm_calls, usd)
