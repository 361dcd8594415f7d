"""Valid GPU schedules of kernels written in several tiled stages: a failed draw is repaired
stage by stage instead of drawn again whole.

On CUDA, MetaSchedule checks a schedule (``VerifyGPUCode``) against the block's thread limits
(each tiled stage asks for 32-1024 threads) and the GPU's shared memory per block (48 KiB); a
random tiling of one stage passes about one time in ten. A kernel of one tiled stage (a GEMM, a
conv) draws a valid schedule in a few dozen attempts, but attention tiles two matmuls and the
gated MLP three, whose random draws must pass together: not one of 72 random draws of FLUX
attention did (2026-12-07), so a CUDA run of those layers found no candidate at all.

A stage's decisions are independent of the other stages' checks, so a failed draw is repaired:
the checks are run here, per stage (the thread extent of each tiled block; each kernel's shared
memory, charged to the stages that read its shared buffers), and only the failing stages'
sampling decisions are drawn again, the passing stages' kept, until every stage passes. A draw
whose failure cannot be charged to a stage (the lowering itself fails, as some sketches do
whatever their decisions) is not repaired. Nothing here replaces MetaSchedule's check: a repaired
schedule is post-processed again, ``VerifyGPUCode`` included, before it is used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

#: TVM's lowering up to the point where ``VerifyGPUCode`` checks a schedule (its post-processor's
#: pass list, tvm/s_tir/meta_schedule/postproc/verify_gpu_code.cc, with 0.27's module names)
_PASSES = (
    "LowerCrossThreadReduction",
    "LowerInitBlock",
    "PlanAndUpdateBufferAllocationLocation",
    "ConvertBlocksToOpaque",
    "LiftThreadBinding",
    "ManifestSharedMemoryLocalStage",
    "CompactBufferAllocation",
    "StmtSimplify",
    "LowerAutoCopy",
    "UnifyThreadBinding",
    "LowerMatchBuffer",
    "InjectSoftwarePipeline",
    "LowerOpaqueBlock",
    "FlattenBuffer",
    "BF16ComputeLegalize",
    "NarrowDataType",
    "StmtSimplify",
    "VectorizeLoop",
    "InjectVirtualThread",
    "InjectDoubleBuffer",
    "StorageRewrite",
    "MergeSharedMemoryAllocations",
    "LowerIntrin",
)


def _pass(name: str):
    import tvm.s_tir.transform as s_tir
    import tvm.tirx.transform as tirx

    make = getattr(s_tir, name, None) or getattr(tirx, name)
    if name == "NarrowDataType":
        return make(32)
    if name == "VectorizeLoop":
        return make(True)
    return make()


def _visit(stmt, fn: Callable) -> None:
    """Every statement and block under ``stmt``, parents first; below a statement for which
    ``fn`` answers True, none."""
    import tvm.tirx as tirx

    if stmt is None or fn(stmt):
        return
    if isinstance(stmt, tirx.SeqStmt):
        for child in stmt:
            _visit(child, fn)
        return
    for attr in ("block", "body", "init", "then_case", "else_case"):
        child = getattr(stmt, attr, None)
        if child is not None and not isinstance(child, (int, float, str)):
            _visit(child, fn)


def _stage(name: str) -> str:
    """The block a schedule's block came from (the reduction's init and update halves)."""
    for suffix in ("_init", "_update"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def decision_stages(trace) -> dict:
    """Each instruction of ``trace`` -> the names of the blocks its inputs derive from (a tile
    size sampled on a loop of block ``QK`` -> {"QK"})."""
    of_rv: dict = {}
    stages: dict = {}
    for inst in trace.insts:
        if inst.kind.name == "GetSBlock":
            names = {str(inst.attrs[0])}
        else:
            names = set()
            for rv in inst.inputs:
                try:
                    names |= of_rv.get(rv, set())
                except TypeError:  # a constant input (an int, a string)
                    continue
        for rv in inst.outputs:
            of_rv[rv] = names
        stages[inst] = names
    return stages


def failing_stages(mod, target) -> set[str] | None:
    """The blocks of a post-processed GPU module (``VerifyGPUCode`` aside) that break the GPU's
    limits: a tiled block run by fewer or more threads than it asks, the stages reading a
    kernel's shared buffers where that kernel needs more shared memory than a block has. An
    empty set: nothing to charge to a stage; None: the lowering failed, charged to none."""
    import tvm
    import tvm.s_tir as s_tir
    import tvm.tirx as tirx

    name, func = next((gv.name_hint, f) for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc))
    bad: set[str] = set()

    def threads(stmt, product: int) -> None:
        if isinstance(stmt, tirx.For):
            tag = str(stmt.thread_binding.thread_tag) if stmt.thread_binding is not None else ""
            threads(stmt.body, product * int(stmt.extent) if tag.startswith("threadIdx") else product)
        elif isinstance(stmt, s_tir.SBlockRealize):
            threads(stmt.block, product)
        elif isinstance(stmt, s_tir.SBlock):
            low = stmt.annotations.get("meta_schedule.thread_extent_low_inclusive")
            high = stmt.annotations.get("meta_schedule.thread_extent_high_inclusive")
            if low is not None and high is not None and not int(low) <= product <= int(high):
                bad.add(_stage(stmt.name_hint))
            threads(stmt.body, product)
        elif isinstance(stmt, tirx.SeqStmt):
            for child in stmt:
                threads(child, product)
        elif getattr(stmt, "body", None) is not None:
            threads(stmt.body, product)

    threads(func.body, 1)
    readers: dict[str, set[str]] = defaultdict(set)

    def read(stmt) -> None:
        if isinstance(stmt, s_tir.SBlock):
            for region in stmt.reads:
                readers[region.source.name].add(_stage(stmt.name_hint))

    _visit(func.body, read)
    lowered = tvm.IRModule(
        {name: func.with_attr("global_symbol", name).with_attr("target", target).with_attr("tir.noalias", True)}
    )
    try:
        for step in _PASSES:
            lowered = _pass(step)(lowered)
    except Exception:  # noqa: BLE001 - TVM raises its own error types for a schedule it cannot lower
        return bad or None
    limit = int(target.attrs["max_shared_memory_per_block"])
    kernels: list[list[tuple[str, int]]] = []

    def kernel(launch) -> bool:
        """At an outermost kernel launch (a ``blockIdx`` thread extent): its shared buffers."""
        if not (
            isinstance(launch, tirx.AttrStmt)
            and launch.attr_key == "thread_extent"
            and "blockIdx" in str(launch.node.thread_tag)
        ):
            return False
        shared: list[tuple[str, int]] = []

        def alloc(node) -> None:
            if isinstance(node, tirx.AllocBuffer) and "shared" in str(node.buffer.scope()):
                size = int(np.prod([int(x) for x in node.buffer.shape]))
                shared.append((node.buffer.name, size * tvm.DataType(node.buffer.dtype).bits // 8))

        _visit(launch.body, alloc)
        kernels.append(shared)
        return True

    _visit(lowered[name].body, kernel)
    for shared in kernels:
        if sum(size for _, size in shared) > limit:
            for buffer, _ in shared:
                bad |= {stage for stage in readers.get(buffer, ()) if not stage.endswith("_shared")}
    return bad
