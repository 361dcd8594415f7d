"""MetaSchedule glue: targets, the design space, mutators, trace replay, the cost model.

Everything TVM-specific that the search needs lives here, behind small functions and one
:class:`SearchSpace` per (kernel, target). A schedule is carried as a :class:`Candidate`: the
post-processed Schedule, its trace and the structural hash of its module. Traces travel as
plain JSON (the format MetaSchedule's database stores) and replay exactly.

Measuring lives in :mod:`search.engine.measure`; it runs candidates in worker processes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .measure import one_line
from .tvmenv import install_tensor_intrin_stub
from .tvmenv import tvm as _tvm
from .workloads import KEEP_STAGE, KernelSpec, build_module

install_tensor_intrin_stub()

#: CUDA targets by queue name: ``cuda`` is an sm_80 part; ``cuda-smXY`` picks the arch.
_CUDA_TAGS = {"sm80": "nvidia/nvidia-a100", "sm90": "nvidia/nvidia-h100"}
_TARGET_RE = re.compile(r"^(llvm|cuda)(?:-(sm\d{2,3}a?))?$")

#: The mutators of each target kind and the probabilities that drive random moves
#: (ALGORITHM.md section 1). MetaSchedule's default space generator carries the same set.
MUTATOR_PROBS = {
    "llvm": {
        "MutateTileSize": 0.9,
        "MutateComputeLocation": 0.05,
        "MutateUnroll": 0.03,
        "MutateParallel": 0.02,
    },
    "cuda": {
        "MutateTileSize": 0.9,
        "MutateUnroll": 0.08,
        "MutateThreadBinding": 0.02,
    },
}


class TargetError(ValueError):
    """A target name this build does not know."""


def target_kind(name: str) -> str:
    m = _TARGET_RE.fullmatch(name or "")
    if not m:
        raise TargetError(f"unknown target {name!r}; use llvm, cuda or cuda-smXY (e.g. cuda-sm90)")
    return m.group(1)


def make_target(name: str, num_cores: int | None = None):
    """A TVM Target from a target (queue) name: ``llvm``, ``cuda``, ``cuda-sm80``, ``cuda-sm90``."""
    tvm = _tvm()
    from tvm.target import codegen

    kind = target_kind(name)
    if kind == "llvm":
        import os

        cores = num_cores or len(os.sched_getaffinity(0))
        return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": cores})
    arch = _TARGET_RE.fullmatch(name).group(2) or "sm80"  # type: ignore[union-attr]  # target_kind checked it
    host = {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}
    tag = _CUDA_TAGS.get(arch.rstrip("a"))
    base = tvm.target.Target(tag).export() if tag else dict(tvm.target.Target(_CUDA_TAGS["sm80"]).export())
    spec = {k: v for k, v in base.items() if k not in ("tag", "keys")}
    spec["arch"] = "sm_" + arch[2:]
    spec["host"] = host
    return tvm.target.Target(spec)


# --- traces as plain JSON --------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """TVM containers and IntImm/FloatImm to plain Python, for JSON."""
    from tvm.tirx import FloatImm, IntImm

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, IntImm):
        return int(obj.value)
    if isinstance(obj, FloatImm):
        return float(obj.value)
    if hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or hasattr(obj, "__len__"):
        return [_plain(x) for x in obj]
    return str(obj)


def trace_to_json(trace, remove_postproc: bool = False) -> list:
    return _plain(trace.as_json(remove_postproc=remove_postproc))


@dataclass
class Candidate:
    """One post-processed schedule of the kernel."""

    sch: Any  # tvm.s_tir.Schedule
    shash: str
    #: the index of the design-space sketch a random sample was drawn from (mutators keep it);
    #: None where not known (a mutant, a loaded trace)
    sketch: int | None = None

    @property
    def trace(self):
        return self.sch.trace

    def trace_json(self) -> list:
        """The full trace, post-processing included: replays to exactly this module."""
        return trace_to_json(self.sch.trace, remove_postproc=False)

    def script(self) -> str:
        return self.sch.mod.script()


def structural_hash(mod) -> str:
    import tvm_ffi

    return format(tvm_ffi.structural_hash(mod) & (2**64 - 1), "016x")


def apply_trace_json(mod, trace_json: list):
    """Replay a full trace (as stored) on ``mod``; returns the Schedule."""
    from tvm.s_tir import Schedule, Trace

    sch = Schedule(mod)
    Trace.apply_json_to_schedule(trace_json, sch)
    return sch


class TraceMismatch(ValueError):
    """A stored trace does not replay on the kernel as this version builds it: the kernel's
    definition changed after the trace was recorded (the library rewrote attention on
    2026-12-07), or another TVM version wrote it."""


def replay(mod, trace_json: list):
    """:func:`apply_trace_json`, with TVM's errors (its own types) as :class:`TraceMismatch`."""
    try:
        return apply_trace_json(mod, trace_json)
    except Exception as exc:  # noqa: BLE001 - TVM raises its own error types for a trace that does not apply
        raise TraceMismatch(one_line(exc)[:300]) from exc


#: how many traces' outcomes ``SearchSpace.realize`` remembers (about 100 bytes each) before it
#: starts over
OUTCOMES_REMEMBERED = 200_000
_UNKNOWN = object()
#: how many times a failed GPU draw of a kernel of several tiled stages is repaired (its failing
#: stages drawn again) before it is given up: FLUX attention's valid draws on ``cuda-sm80`` took
#: 7-45 draws of a sketch (gpurepair.py)
GPU_REPAIRS = 48
#: how many schedules' features ``CostModel`` keeps (a few KB each) before it starts over
FEATURES_REMEMBERED = 5_000


def _decided(trace) -> bool:
    """Whether every sampling instruction of ``trace`` has its decision (else a replay draws
    the missing ones from its seed, and the trace alone does not say what it makes)."""
    return len(trace.decisions) == sum(inst.kind.name.startswith("Sample") for inst in trace.insts)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 2**31 - 1))


#: the decisions a directed move may name -> the sampling instruction that makes them
DECISION_KINDS = {"tile": "SamplePerfectTile", "unroll": "SampleCategorical", "compute_at": "SampleComputeLocation"}


@dataclass(frozen=True)
class DirectedMove:
    """One concrete decision an LLM names: the ``index``-th decision of ``kind`` (in the order
    :meth:`SearchSpace.decisions` lists them) set to ``values`` (tile: the factors; unroll:
    the step; compute_at: the location). Plain data, checked before it touches a trace."""

    kind: str
    index: int
    values: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"Set {self.kind}#{self.index}={'x'.join(str(v) for v in self.values)}"


def kept_stages(mod) -> tuple[str, ...]:
    """The names of the blocks a kernel marks to stay stages of their own (its TE stages with
    :data:`~.workloads.KEEP_STAGE`'s annotation)."""
    from tvm.s_tir import Schedule

    sch = Schedule(mod)
    ((key, value),) = KEEP_STAGE.items()
    blocks = [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
    return tuple(b.name_hint for b in blocks if str(b.annotations.get(key, "")) == value)


def keep_stages(names: Sequence[str]):
    """A MetaSchedule post-processor that rejects a schedule without these blocks. AutoInline
    honours the annotation, but RandomComputeLocation (and the compute-location mutator) may still
    choose to inline a block: a schedule that did would recompute the stage in its consumer's
    inner loops (silu: a sigmoid for every multiply-add of the down projection)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.postproc import PyPostproc
    from tvm.s_tir.schedule import _ffi_api as schedule_api

    wanted = tuple(names)

    @derived_object
    class KeepStages(PyPostproc):
        def _initialize_with_tune_context(self, context) -> None:
            pass

        def apply(self, sch) -> bool:
            # the schedule's FFI functions directly: its Python methods check every argument's type
            # at a cost that was ~5% of a search's time (this runs for every schedule realized)
            root = schedule_api.ScheduleGetSBlock(sch, "root", None)
            present = {
                schedule_api.ScheduleGet(sch, b).name_hint for b in schedule_api.ScheduleGetChildBlocks(sch, root)
            }
            return all(name in present for name in wanted)

        def clone(self):
            return keep_stages(wanted)

    return KeepStages()


def _tiled(trace) -> int:
    """The blocks a sketch's trace gives a multi-level tiling structure."""
    return sum(
        1 for inst in trace.insts
        if inst.kind.name == "Annotate" and any(str(a) == "meta_schedule.tiling_structure" for a in inst.attrs)
    )  # fmt: skip


class SearchSpace:
    """The design space of one kernel on one target, with its mutators and post-processors."""

    #: whether :meth:`realize` remembers each trace's outcome and the cost model each schedule's
    #: features (off: every trace replayed, every schedule's features extracted, for a check
    #: that the memories change nothing but time)
    remember = True

    def __init__(self, spec: KernelSpec, target_name: str, *, seed: int = 0):
        tvm = _tvm()
        from tvm.s_tir import meta_schedule as ms

        self.spec = spec
        self.target_name = target_name
        self.kind = target_kind(target_name)
        self.target = make_target(target_name)
        self.mod = build_module(spec)
        self.context = ms.TuneContext(
            self.mod,
            target=self.target,
            space_generator=self.make_generator(),
            rand_state=seed + 1,
            num_threads=1,
        )
        self.sketches = list(self.context.generate_design_space())
        #: the stages the design space tiles (MetaSchedule's multi-level tiling: 1 for a matmul or
        #: a conv, 2 for attention's two matmuls, 3 for a gated MLP; 0 for a norm), the most of any sketch
        self.tiled_stages = max((_tiled(sk.trace) for sk in self.sketches), default=0)
        gen = self.context.space_generator
        self.postprocs = list(gen.postprocs)
        self.mutators = {}
        for mutator, _ in gen.mutator_probs.items():
            name = type(mutator).__name__
            mutator._initialize_with_tune_context(self.context)
            self.mutators[name] = mutator
        probs = MUTATOR_PROBS[self.kind]
        #: mutator name -> probability, only those this kernel's design space has
        self.mutator_probs = {n: p for n, p in probs.items() if n in self.mutators}
        self._tvm = tvm
        self._signatures: dict[str, int] | None = None
        #: realize()'s memory: a trace's text (hashed) -> its schedule's structural hash, None: invalid
        self._outcomes: dict[bytes, str | None] = {}
        self.replays = 0  # traces replayed and post-processed
        self.replays_saved = 0  # traces realize() answered from its memory

    def make_generator(self):
        """MetaSchedule's default space for the target kind, named explicitly: on sm_80+ the
        from-target default would add tensor-core rules, which need the real intrinsics. A
        kernel with stages that must stay stages (:data:`~.workloads.KEEP_STAGE`) gets one more
        post-processor, which rejects a schedule that inlined one of them."""
        from tvm.s_tir import meta_schedule as ms

        kept = kept_stages(self.mod)
        postprocs = self.kind if not kept else [*ms.postproc.Postproc.create(self.kind), keep_stages(kept)]
        return ms.space_generator.PostOrderApply(sch_rules=self.kind, postprocs=postprocs, mutator_probs=self.kind)

    # -- names ---------------------------------------------------------------------------
    @property
    def mutator_names(self) -> list[str]:
        return list(self.mutator_probs)

    # -- schedules -----------------------------------------------------------------------
    def _postprocess(self, sch) -> bool:
        sch.enter_postproc()
        return all(postproc.apply(sch) for postproc in self.postprocs)

    def realize(self, trace, rng: np.random.Generator, *, unless: Container[str] = ()) -> Candidate | None:
        """Replay a trace whose every decision is made (a schedule's, or a mutator's output)
        without its post-processing, and post-process it; None if invalid.

        Such a trace always makes the same schedule, so each trace's outcome is remembered by its
        text: an invalid trace is not replayed again, nor one whose schedule's structural hash is
        in ``unless`` (the schedules the caller would discard: the tree's, those it drew). Replaying
        and post-processing is most of the search's own time (tens of milliseconds a trace on
        the attention layers), and screening and refine draw the same mutant again and again (a
        mutator with few choices). The generator is drawn the same either way, so a search makes
        the same choices with the memory as without."""
        seed = _seed(rng)
        if not self.remember or not _decided(trace):
            return self._replay(trace, seed)
        key = hashlib.blake2b(str(trace).encode(), digest_size=16).digest()
        known = self._outcomes.get(key, _UNKNOWN)
        if known is None or (known is not _UNKNOWN and known in unless):
            self.replays_saved += 1
            return None
        cand = self._replay(trace, seed)
        if len(self._outcomes) >= OUTCOMES_REMEMBERED:
            self._outcomes.clear()
        self._outcomes[key] = cand.shash if cand is not None else None
        return cand

    def _replay(self, trace, seed: int) -> Candidate | None:
        """``trace`` replayed (sampling any decision it lacks from ``seed``) and post-processed."""
        from tvm.s_tir import Schedule

        self.replays += 1
        sch = Schedule(self.mod, seed=seed, error_render_level="none")
        try:
            trace.apply_to_schedule(sch, remove_postproc=True)
        except Exception:  # noqa: BLE001 - TVM raises TVMError subclasses on invalid replays
            return None
        if not self._postprocess(sch):
            return None
        return Candidate(sch=sch, shash=structural_hash(sch.mod))

    def sample(self, rng: np.random.Generator, attempts: int = 16, sketch: int | None = None) -> Candidate | None:
        """A random point of the design space: a sketch (``sketch``'s, or one drawn at random)
        with fresh sampling decisions; the candidate records its sketch's index."""
        from tvm.s_tir import Trace

        for _ in range(attempts):
            index = int(rng.integers(len(self.sketches))) if sketch is None else sketch
            base = self.sketches[index].trace.simplified(remove_postproc=True)
            trace = Trace(base.insts, {})  # (no decisions: new ones each time)
            cand = self._draw_repaired(trace, rng) if self.gpu_repairs else self._replay(trace, _seed(rng))
            if cand is not None:
                cand.sketch = index
                return cand
        return None

    @property
    def gpu_repairs(self) -> int:
        """Repairs of one failed draw (gpurepair.py): on a GPU, where the design space tiles
        several stages whose random tilings rarely pass the GPU's limits together; 0 elsewhere."""
        return GPU_REPAIRS if self.kind == "cuda" and self.tiled_stages > 1 else 0

    def _draw_repaired(self, trace, rng: np.random.Generator) -> Candidate | None:
        """A random draw of a sketch's decisions, post-processed; where it fails the GPU's limits,
        the failing stages' decisions are drawn again, the others kept (gpurepair.py)."""
        from tvm.s_tir import Schedule, Trace

        from .gpurepair import decision_stages, failing_stages

        for _ in range(1 + self.gpu_repairs):
            self.replays += 1
            sch = Schedule(self.mod, seed=_seed(rng), error_render_level="none")
            try:
                trace.apply_to_schedule(sch, remove_postproc=True)
            except Exception:  # noqa: BLE001 - TVM raises TVMError subclasses on invalid replays
                return None
            drawn = Trace(list(sch.trace.insts), dict(sch.trace.decisions))
            sch.enter_postproc()
            failed = next((i for i, p in enumerate(self.postprocs) if not p.apply(sch)), None)
            if failed is None:
                return Candidate(sch=sch, shash=structural_hash(sch.mod))
            # only VerifyGPUCode's failures are charged to stages (it checks a lowered copy, so the
            # schedule stands as the post-processors before it left it); the rest must pass
            rest = self.postprocs[failed + 1 :]
            if type(self.postprocs[failed]).__name__ != "VerifyGPUCode" or not all(p.apply(sch) for p in rest):
                return None
            try:
                culprits = failing_stages(sch.mod, self.target)
            except Exception:  # noqa: BLE001 - a repair is an extra: a draw it cannot read is dropped as before
                return None
            if not culprits:
                return None
            stages = decision_stages(drawn)
            trace = Trace(drawn.insts, {i: d for i, d in drawn.decisions.items() if not stages[i] & culprits})
        return None

    def _signature(self, trace) -> str:
        insts, _ = trace_to_json(trace.simplified(remove_postproc=True), remove_postproc=True)
        return json.dumps(insts)

    def sketch_of(self, cand: Candidate) -> int | None:
        """The sketch a random sample (as :meth:`sample` draws it, unmutated) came from: its
        instructions without their decisions are the sketch's. None for a schedule a mutator
        changed beyond its decisions (the parallel mutator rewrites an annotation) or that no
        sketch of this space produced."""
        if self._signatures is None:
            self._signatures = {self._signature(s.trace): i for i, s in enumerate(self.sketches)}
        return self._signatures.get(self._signature(cand.trace))

    def mutate(self, trace, name: str, rng: np.random.Generator):
        """Apply one named mutator to a trace; the new trace, or None if it does not apply."""
        from tvm.s_tir.meta_schedule import _ffi_api

        mutator = self.mutators.get(name)
        if mutator is None:
            raise KeyError(name)
        return _ffi_api.MutatorApply(mutator, trace, _seed(rng))

    def load(self, trace_json: list) -> Candidate:
        """A candidate from a stored full trace; :class:`TraceMismatch` if it does not replay."""
        sch = replay(self.mod, trace_json)
        return Candidate(sch=sch, shash=structural_hash(sch.mod))

    def load_saved(self, trace_json: list, node_id: int) -> Candidate:
        """A resumed run's saved node; a :class:`TraceMismatch` that says what the user can do."""
        try:
            return self.load(trace_json)
        except TraceMismatch as exc:
            raise TraceMismatch(
                f"saved node {node_id}'s schedule does not replay on {self.spec.label} as this version "
                f"builds it ({exc}): the kernel's definition changed after the run, so the run cannot go on "
                "from its tree; its results and downloads stay, and a new run tunes the kernel again"
            ) from exc

    # -- directed moves: one named decision set to a value -------------------------------------
    def apply_decision(self, trace, move: DirectedMove) -> tuple[Any | None, str]:
        """``trace`` with one sampling decision set as ``move`` names it, checked against that
        decision's legal choices first: (the new trace, "") or (None, why not). A tile's factors
        must keep the loop's extent (their product) and the number of levels, within the
        innermost-factor limit; an unroll step must be one of its candidates; a compute location
        an index the replay accepts (realize() checks that)."""
        sites = [inst for inst in trace.insts if inst.kind.name == DECISION_KINDS[move.kind]]
        if not 0 <= move.index < len(sites):
            return None, f"no {move.kind} decision #{move.index} (the schedule has {len(sites)})"
        inst = sites[move.index]
        old = trace.get_decision(inst)
        if move.kind == "tile":
            factors = [int(x) for x in old]
            limit = int(inst.attrs[1]) if len(inst.attrs) > 1 else 0
            if len(move.values) != len(factors) or any(v < 1 for v in move.values):
                return None, f"tile #{move.index} takes {len(factors)} positive factors"
            if int(np.prod(move.values)) != int(np.prod(factors)):
                return None, f"tile #{move.index}'s factors must multiply to {int(np.prod(factors))}"
            if limit > 0 and move.values[-1] > limit:
                return None, f"tile #{move.index}'s innermost factor is at most {limit}"
            decision: Any = list(move.values)
        elif move.kind == "unroll":
            candidates = [int(x) for x in inst.attrs[0]]
            if len(move.values) != 1 or move.values[0] not in candidates:
                return None, f"unroll #{move.index} is one of {candidates}"
            decision = candidates.index(move.values[0])
        else:
            if len(move.values) != 1 or not -2 <= move.values[0] < 64:
                return None, f"compute_at #{move.index} is one loop index"
            decision = move.values[0]
        if decision == (_plain(old) if move.kind == "tile" else int(old)):
            return None, "the schedule already has that decision"
        return trace.with_decision(inst, decision, remove_postproc=True), ""

    # -- what an LLM reads -------------------------------------------------------------------
    @staticmethod
    def decisions(trace) -> dict[str, list]:
        """The sampling decisions of a trace in compact form: tiles, unroll, compute-at, parallel."""
        tiles, unroll, compute_at, parallel, other = [], [], [], [], []
        for inst in trace.insts:
            kind = inst.kind.name
            if kind == "Annotate" and len(inst.attrs) and str(inst.attrs[0]) == "meta_schedule.parallel":
                parallel.append(_plain(inst.inputs[1]))
            decision = trace.get_decision(inst)
            if decision is None:
                continue
            if kind == "SamplePerfectTile":
                tiles.append(_plain(decision))
            elif kind == "SampleCategorical":
                candidates = _plain(inst.attrs[0])
                value = candidates[int(decision)] if isinstance(candidates, list) else int(decision)
                unroll.append(value)
            elif kind == "SampleComputeLocation":
                compute_at.append(int(decision))
            else:
                other.append(_plain(decision))
        out = {"tile": tiles, "unroll": unroll, "compute_at": compute_at, "parallel": parallel}
        if other:
            out["other"] = other
        return out


class CostModel:
    """MetaSchedule's XGBoost cost model, scoring schedules by predicted normalized throughput.

    Until it has seen a measurement (or ``warmup`` of them) it answers random scores from the
    search's own generator, so an untrained run is still repeatable under a seed.
    """

    def __init__(self, space: SearchSpace, rng: np.random.Generator, warmup: int = 0):
        from tvm.s_tir import meta_schedule as ms

        self.space = space
        self.rng = rng
        #: records the model must hold before its scores are used (random scores until then), as
        #: MetaSchedule's XGBModel's num_warmup_samples (100 there, so its evolutionary search
        #: picks at random for its first 100 measurements)
        self.warmup = warmup
        self.model = ms.cost_model.XGBModel(num_warmup_samples=0, num_tuning_cores=1)
        self.model.verbose_eval = 0
        self.trained = False
        self.size = 0
        self.evaluations = 0  # schedules scored by the trained model (screening's work)
        self.extractions = 0  # of those, schedules whose features were extracted (not remembered)
        #: a schedule's features (structural hash -> its per-store feature rows): they depend on
        #: the schedule alone, and extracting them is most of a prediction's time, while refine and
        #: rollouts score many schedules again after each retraining
        self._features: dict[str, np.ndarray] = {}

    def _measure_candidates(self, cands: Sequence[Candidate]):
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo

        return [ms.MeasureCandidate(c.sch, ArgInfo.from_entry_func(c.sch.mod, remove_preproc=True)) for c in cands]

    def predict(self, cands: Sequence[Candidate]) -> np.ndarray:
        if not cands:
            return np.zeros(0)
        if not self.trained or self.size < self.warmup:
            return self.rng.uniform(0.0, 1.0, size=len(cands))
        self.evaluations += len(cands)
        if self.space.remember:
            scores = self._predict_remembering(cands)
        else:
            self.extractions += len(cands)
            scores = self.model.predict(self.space.context, self._measure_candidates(cands))
        return np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)

    def _predict_remembering(self, cands: Sequence[Candidate]) -> np.ndarray:
        """XGBoost's scores, extracting the features only of schedules not scored before."""
        features = {c.shash: self._features[c.shash] for c in cands if c.shash in self._features}
        new = list({c.shash: c for c in cands if c.shash not in features}.values())
        if new:
            self.extractions += len(new)
            rows = self.model.extractor.extract_from(self.space.context, self._measure_candidates(new))
            if len(self._features) + len(new) > FEATURES_REMEMBERED:
                self._features.clear()
            for cand, row in zip(new, rows, strict=True):
                features[cand.shash] = self._features[cand.shash] = row.numpy().astype("float32")
        # what XGBModel.predict does once it has extracted the features
        return self.model._predict(xs=[features[c.shash] for c in cands])

    def update(
        self, cands: Sequence[Candidate], latencies: Sequence[float | None], space: SearchSpace | None = None
    ) -> None:
        """Train on measured latencies (seconds; None for a failed candidate). ``space``: the
        candidates' own design space when they are of another kernel (a warm start); the model
        normalizes throughput per kernel."""
        from tvm.s_tir.meta_schedule.runner import RunnerResult

        if not cands:
            return
        results = [RunnerResult([float(lat)], None) if lat else RunnerResult(None, "failed") for lat in latencies]
        self.model.update((space or self.space).context, self._measure_candidates(cands), results)
        self.size += len(cands)
        self.trained = self.model.booster is not None


# --- MetaSchedule's own database format ---------------------------------------------------------

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


def write_database(
    spec: KernelSpec, target_name: str, records: Sequence[tuple[list, float]], directory: str | Path
) -> tuple[tuple[Path, Path], int]:
    """Write ``records`` (a full trace as stored, its measured latency in seconds) as a
    MetaSchedule ``JSONDatabase`` in ``directory``: TVM loads it unchanged, e.g. with
    ``ms.database.JSONDatabase(work_dir=directory)`` and ``query_schedule(mod, target, "main")``.
    Returns the two paths and how many records were left out because their trace no longer
    applies (a trace stored by another TVM version)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / WORKLOAD_FILE, out / RECORD_FILE)
    for p in paths:
        p.unlink(missing_ok=True)
    db = ms.database.JSONDatabase(str(paths[0]), str(paths[1]), allow_missing=True)
    mod = build_module(spec)
    workload = db.commit_workload(mod)
    target = make_target(target_name)
    args = ArgInfo.from_prim_func(mod["main"])
    skipped = 0
    for trace_json, latency_s in records:
        try:
            sch = apply_trace_json(mod, trace_json)
        except Exception:  # noqa: BLE001 - TVM raises its own error types for a trace that does not apply
            skipped += 1
            continue
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [float(latency_s)], target, args))
    return paths, skipped
