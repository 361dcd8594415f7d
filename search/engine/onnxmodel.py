"""Whole models: an ONNX file in, tasks out, a tuned compiled model back.

Django-free, like the rest of the engine. The steps a model run takes:

1. :func:`import_onnx` checks the file (size, protobuf, ONNX checker, operators the Relax
   frontend converts, fixed input shapes), imports it with TVM's Relax ONNX frontend, lowers
   and fuses it (LegalizeOps, FoldConstant, AnnotateTIROpPattern, FuseOps, FuseTIR) and
   extracts MetaSchedule's tuning tasks. Each task becomes a :class:`~.workloads.KernelSpec`
   of op ``tir`` (its PrimFunc as JSON), searched like any other kernel.
2. :func:`allocate` shares the trial budget across the tasks (their share of the untuned
   model's latency).
3. :func:`build_database` turns each task's best trace into a MetaSchedule database;
   :func:`compile_model` builds the model with it; :func:`measure_model` and
   :func:`run_onnxruntime` time the untuned model, the tuned one and onnxruntime on the same
   number of threads, on the same inputs, and compare the outputs.

The ONNX file is data: protobuf parsed by ``onnx``; nothing in it is evaluated.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .workloads import TIR_OP, KernelSpec, SpecError, flops, validate

MAX_MODEL_BYTES = 256 << 20
#: tasks below this share of the untuned model's latency get no trials of their own
MIN_SHARE = 0.005
#: fewest trials worth starting a task's search with
MIN_TASK_TRIALS = 4

_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 3: "int8", 2: "uint8", 6: "int32", 7: "int64", 9: "bool"}


class ModelError(ValueError):
    """An ONNX file that cannot be tuned: the message says why and what to do."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Task:
    """One tuning task of a model: a fused PrimFunc and how often the model calls it."""

    name: str
    weight: int
    spec: KernelSpec
    flops: float
    #: the unscheduled task's latency, once measured (seconds)
    baseline_s: float | None = None

    @property
    def shapes(self) -> str:
        """``1x2048x7x7, 512x2048x1x1 -> 1x512x7x7``: the buffers in, then out."""
        from .workloads import input_shapes, output_buffers

        def dims(shape):
            return "x".join(map(str, shape)) or "scalar"

        ins = ", ".join(dims(s) for _, s in input_shapes(self.spec))
        outs = ", ".join(dims(s) for s, _ in output_buffers(self.spec))
        return f"{ins} -> {outs}"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "weight": self.weight,
            "flops": self.flops,
            "shapes": self.shapes,
            "dtype": self.spec.dtype,
            "baseline_s": self.baseline_s,
        }


@dataclass
class ImportedModel:
    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    tasks: list[Task]
    operators: dict[str, int]  # ONNX operator -> count
    mod: object = field(repr=False, default=None)  # the imported Relax IRModule (not yet lowered)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "operators": self.operators,
            "tasks": [t.to_dict() for t in self.tasks],
        }


# --- import -------------------------------------------------------------------------------------


def _tensor_info(value, what: str) -> TensorInfo:
    ttype = value.type.tensor_type
    dtype = _ONNX_DTYPES.get(ttype.elem_type)
    if dtype is None:
        raise ModelError(f"{what} {value.name!r} has element type {ttype.elem_type}, which COLT does not measure")
    shape = []
    for axis, dim in enumerate(ttype.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        else:
            label = dim.dim_param or "?"
            raise ModelError(
                f"{what} {value.name!r} has a dynamic dimension {label!r} (axis {axis}); "
                "export the model with a fixed shape for it, or give one with --input-shape NAME=D0,D1,..."
            )
    return TensorInfo(value.name, tuple(shape), dtype)


def load_onnx(data: bytes, input_shapes: dict[str, Sequence[int]] | None = None):
    """Parse and check an ONNX file; returns the ``onnx.ModelProto`` with fixed input shapes."""
    import onnx
    from google.protobuf.message import DecodeError

    if not data:
        raise ModelError("the file is empty")
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(f"the file is {len(data) / 2**20:.0f} MiB; the limit is {MAX_MODEL_BYTES >> 20} MiB")
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"not an ONNX model (the protobuf does not parse: {str(exc)[:120]})") from None
    if not model.graph.node:
        raise ModelError("not an ONNX model (no graph nodes; is the file truncated?)")
    for name, shape in (input_shapes or {}).items():
        found = [i for i in model.graph.input if i.name == name]
        if not found:
            raise ModelError(f"the model has no input {name!r}")
        dims = found[0].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ModelError(f"input {name!r} has {len(dims)} axes; the shape given has {len(shape)}")
        for dim, value in zip(dims, shape, strict=True):
            dim.Clear()
            dim.dim_value = int(value)
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    if any(uses_external_data(t) for t in _get_all_tensors(model)):
        # a tensor "stored" in another file would make the importer read that file on the server
        raise ModelError("the model keeps tensors in external files; upload a model with its weights inside")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the ONNX checker refuses the model: {str(exc).splitlines()[0][:200]}") from None
    _check_operators(model)
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers:
            _tensor_info(value, "input")
    return model


def _check_operators(model) -> None:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    missing = Counter(n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and n.op_type not in known)
    foreign = Counter(f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx"))
    unsupported = sorted(missing) + sorted(foreign)
    if unsupported:
        raise ModelError(f"operators TVM's ONNX frontend does not convert: {', '.join(unsupported)}")


def lower(mod, target):
    """Lower and fuse a Relax module as MetaSchedule's task extraction needs it: the passes, in
    the order, that ``compile_relax`` applies before it looks the fused functions up in the
    database (another order fuses differently, and no task would be found)."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline

    try:
        dispatch = list(pipeline.library_dispatch_passes(target))
    except (ValueError, AttributeError):
        dispatch = []
    passes = [
        *dispatch,
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    with target:
        return tvm.transform.Sequential(passes)(mod)


def import_onnx(
    data: bytes, target, *, name: str = "model", input_shapes: dict[str, Sequence[int]] | None = None
) -> ImportedModel:
    """The model's tasks (see the module's docstring). ``target`` is a TVM Target."""
    import tvm
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.s_tir import meta_schedule as ms

    model = load_onnx(data, input_shapes)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_tensor_info(v, "input") for v in model.graph.input if v.name not in initializers]
    outputs = []
    for value in model.graph.output:
        try:
            outputs.append(_tensor_info(value, "output"))
        except ModelError:  # outputs may be left symbolic; their shape follows from the inputs
            outputs.append(TensorInfo(value.name, (), _ONNX_DTYPES.get(value.type.tensor_type.elem_type, "?")))
    try:
        mod = from_onnx(model, shape_dict={t.name: list(t.shape) for t in inputs})
        fused = lower(mod, target)
    except Exception as exc:  # noqa: BLE001 - a frontend failure is the model's, said in one line
        raise ModelError(f"TVM could not import the model: {str(exc).strip().splitlines()[-1][:300]}") from None
    extracted = ms.relax_integration.extract_tasks(fused, target)
    tasks = []
    for task in extracted:
        text = tvm.ir.save_json(task.dispatched[0])
        try:
            spec = validate(KernelSpec(TIR_OP, {}, name=_task_name(name, task.task_name), module=text))
        except SpecError as exc:
            raise ModelError(f"task {task.task_name}: {exc}") from None
        tasks.append(Task(task.task_name, int(task.weight), spec, flops(spec)))
    if not tasks:
        raise ModelError("the model yields no tuning tasks (no operator TVM lowers to a kernel)")
    tasks.sort(key=lambda t: -t.flops * t.weight)
    operators = dict(Counter(n.op_type for n in model.graph.node).most_common())
    return ImportedModel(name, inputs, outputs, tasks, operators, mod)


def _task_name(model: str, task: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{model}.{task}")
    return safe[-64:]


# --- the trial budget across tasks --------------------------------------------------------------


def shares(tasks: Sequence[Task]) -> list[float]:
    """Each task's share of the untuned model's latency (weight x unscheduled latency)."""
    costs = [t.weight * (t.baseline_s if t.baseline_s else t.flops * 1e-9) for t in tasks]
    total = sum(costs) or 1.0
    return [c / total for c in costs]


def allocate(tasks: Sequence[Task], total: int) -> list[int]:
    """Trials per task. Tasks under :data:`MIN_SHARE` of the untuned model's latency get none;
    of the rest, the largest shares (as many as half the budget can give
    :data:`MIN_TASK_TRIALS` each) get that minimum, and the other half is shared among them in
    proportion to their share of the untuned latency.

    Where an end-to-end latency is the goal, a task's possible gain is bounded by its share:
    halving a 1% task saves 0.5%, so the budget goes where the time is."""
    share = shares(tasks)
    order = sorted(range(len(tasks)), key=lambda i: -share[i])
    eligible = [i for i in order if share[i] >= MIN_SHARE] or order[:1]
    chosen = eligible[: max(1, min(len(eligible), total // (2 * MIN_TASK_TRIALS)))]
    if len(chosen) == 1:
        return [total if i == chosen[0] else 0 for i in range(len(tasks))]
    rest = total - MIN_TASK_TRIALS * len(chosen)
    mass = sum(share[i] for i in chosen)
    trials = {i: MIN_TASK_TRIALS + math.floor(rest * share[i] / mass) for i in chosen}
    left = total - sum(trials.values())
    for i in chosen[:left]:  # what rounding left goes to the largest shares
        trials[i] += 1
    return [trials.get(i, 0) for i in range(len(tasks))]


def estimated_latency(tasks: Sequence[Task], best: Sequence[float | None]) -> float | None:
    """The model's latency estimated from its tasks: sum of weight x (best or unscheduled)."""
    total = 0.0
    for task, latency in zip(tasks, best, strict=True):
        value = latency or task.baseline_s
        if value is None:
            return None
        total += task.weight * value
    return total


# --- build, time, compare -----------------------------------------------------------------------


def build_database(target, records: Sequence[tuple[KernelSpec, list, float]], work_dir: str | Path | None = None):
    """A MetaSchedule database holding each task's best trace: ``records`` are (task spec,
    trace JSON, latency in seconds). With ``work_dir``, a JSON database written there."""
    from tvm.s_tir import meta_schedule as ms

    from .compiler import apply_trace_json
    from .workloads import build_module

    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        db = ms.database.JSONDatabase(
            path_workload=str(Path(work_dir) / "database_workload.json"),
            path_tuning_record=str(Path(work_dir) / "database_tuning_record.json"),
        )
    else:
        db = ms.database.MemoryDatabase()
    for spec, trace_json, latency in records:
        mod = build_module(spec)
        sch = apply_trace_json(mod, trace_json)
        workload = db.commit_workload(mod)
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run_secs=[float(latency)], target=target))
    return db


def compile_model(mod, target, database=None):
    """The model's executable: untuned, or with the database's schedules applied."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    if database is None:
        return tvm.compile(mod, target=target)
    return ms.relax_integration.compile_relax(database, mod, target, params=None)


def make_model_inputs(inputs: Sequence[TensorInfo], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for t in inputs:
        if t.dtype.startswith("float"):
            arrays.append(rng.uniform(0.0, 1.0, size=t.shape).astype(t.dtype))
        else:
            arrays.append(np.zeros(t.shape, t.dtype))
    return arrays


def _flatten(value) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out = []
    for item in value:
        out += _flatten(item)
    return out


def set_threads(threads: int) -> None:
    import tvm

    config = tvm.get_global_func("runtime.config_threadpool", allow_missing=True)
    if config is not None:
        config(0, int(threads))


def measure_model(executable, inputs: Sequence[np.ndarray], *, repeat: int = 5, threads: int = 1):
    """Run the compiled model: (median seconds, min, max, its outputs)."""
    import tvm
    from tvm import relax

    set_threads(threads)
    dev = tvm.cpu(0)
    vm = relax.VirtualMachine(executable, dev)
    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    outputs = _flatten(vm["main"](*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        vm["main"](*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times), outputs


def run_onnxruntime(data: bytes, inputs: Sequence[TensorInfo], arrays: Sequence[np.ndarray], *, repeat=5, threads=1):
    """onnxruntime on the CPU with ``threads`` intra-op threads: (median s, min, max, outputs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = {t.name: a for t, a in zip(inputs, arrays, strict=True)}
    outputs = session.run(None, feed)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times), [np.asarray(o) for o in outputs]


def max_abs_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float | None:
    """The largest absolute difference; None when the outputs do not line up (count, shape) or
    a difference is not finite (JSON and PostgreSQL hold no infinity)."""
    if len(a) != len(b):
        return None
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:
            return None
        if x.size:
            worst = max(worst, float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()))
    return worst if np.isfinite(worst) else None


LOADER_SNIPPET = """\
import numpy as np
import tvm
from tvm import relax

lib = tvm.runtime.load_module("model.so")
vm = relax.VirtualMachine(lib, tvm.cpu())
{inputs}
out = vm["main"]({args})
print(out.numpy() if hasattr(out, "numpy") else [o.numpy() for o in out])
"""


def loader_snippet(inputs: Sequence[TensorInfo]) -> str:
    lines = [
        f'x{i} = tvm.runtime.tensor(np.random.rand({", ".join(map(str, t.shape))}).astype("{t.dtype}"))'
        for i, t in enumerate(inputs)
    ]
    return LOADER_SNIPPET.format(inputs="\n".join(lines), args=", ".join(f"x{i}" for i in range(len(inputs))))
