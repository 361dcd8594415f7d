"""What a run gives back: its best schedule (TVMScript, trace JSON), a MetaSchedule database of
its measured schedules that TVM loads unchanged, its top-k records, its node history and its
LLM call ledger as CSV."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .engine.compiler import RECORD_FILE, WORKLOAD_FILE, TraceMismatch, replay, write_database
from .engine.events import NODE_FIELDS
from .engine.workloads import build_module
from .models import LLMCall, Node, Run

#: cap on records exported in one database (the best ones are kept): each is replayed on the
#: kernel, ~1-5 ms apiece
MAX_RECORDS = 2000


class NothingToExport(LookupError):
    """The run has no valid measured schedule yet."""


def valid_nodes(run: Run, limit: int | None = None):
    """The run's correctly measured schedules, fastest first."""
    qs = Node.objects.filter(run=run, status="ok", latency__isnull=False, trace__isnull=False).order_by(
        "latency", "node_id"
    )
    return qs[:limit] if limit else qs


def best_node(run: Run) -> Node:
    node = None
    if run.best_node_id is not None:
        node = Node.objects.filter(run=run, node_id=run.best_node_id, status="ok").exclude(trace=None).first()
    node = node or valid_nodes(run).first()
    if node is None:
        raise NothingToExport(f"run {run.pk} has no correctly measured schedule yet")
    return node


def base_name(run: Run) -> str:
    return f"colt-run{run.pk}-{run.kernel.name or run.kernel.op}"


def schedule_script(run: Run) -> str:
    node = best_node(run)
    spec = run.kernel.spec
    try:
        body = replay(build_module(spec), node.trace).mod.script()
    except TraceMismatch as exc:
        raise NothingToExport(
            f"the best schedule's trace does not apply to {run.kernel.name or run.kernel.op} as this version "
            "builds it (the kernel's definition changed after the run: attention's on 2026-12-07); "
            "trace.json and top.json still hold its decisions and latencies"
        ) from exc
    # TVMScript prints its imports as comments; this file is run with plain python
    body = "\n".join(line[2:] if line.startswith("# from tvm") else line for line in body.splitlines())
    from .engine.workloads import input_shapes, output_buffers

    ins = [(list(shape), spec.dtype if spec.op != "tir" else None) for _, shape in input_shapes(spec)]
    if spec.op == "tir":
        from .engine.workloads import _tir_info

        ins = [(list(b.shape), b.dtype) for b in _tir_info(spec.module).inputs]
    outs = [(list(shape), dtype) for shape, dtype in output_buffers(spec)]
    return _SCRIPT.format(
        run=run.pk,
        kernel=run.kernel,
        target=run.target,
        strategy=run.strategy,
        node=node.node_id,
        ms=node.latency * 1e3,
        shash=node.shash,
        body=body,
        inputs=repr(ins),
        outputs=repr(outs),
        kind="cuda" if run.target.startswith("cuda") else "llvm",
    )


_SCRIPT = '''"""COLT run {run}: the best schedule of {kernel} on {target} ({strategy}).

Node {node}, measured {ms:.4f} ms when tuned; structural hash {shash}.
Run it with python: it builds the schedule for this machine and prints its latency here.
"""

import numpy as np
import tvm

{body}

INPUTS = {inputs}  # (shape, dtype) of each input
OUTPUTS = {outputs}


def main():
    from tvm.target import codegen

    cpu = codegen.llvm_get_system_cpu()
    if "{kind}" == "cuda":
        target, dev = tvm.target.Target("cuda", host="llvm"), tvm.cuda(0)
    else:
        target, dev = tvm.target.Target({{"kind": "llvm", "mcpu": cpu, "num-cores": 1}}), tvm.cpu(0)
    lib = tvm.compile(Module, target=target).jit()
    rng = np.random.default_rng(0)
    args = []
    for shape, dtype in INPUTS:
        if dtype in ("int8", "uint8"):
            data = rng.integers(0, 5, size=shape)
        elif dtype.startswith(("int", "uint", "bool")):  # often indices: zero is in bounds
            data = np.zeros(shape)
        else:
            data = rng.uniform(-1, 1, size=shape)
        args.append(tvm.runtime.tensor(data.astype(dtype), dev))
    args += [tvm.runtime.tensor(np.zeros(shape, dtype), dev) for shape, dtype in OUTPUTS]
    timer = lib.time_evaluator("main", dev, number=10, repeat=5, min_repeat_ms=50)
    seconds = sorted(timer(*args).results)[2]
    where = target.kind.name + (" " + cpu if target.kind.name == "llvm" else "")
    print(f"{{seconds * 1e3:.4f}} ms (median of 5) on this machine ({{where}})")


if __name__ == "__main__":
    main()
'''


def trace_document(run: Run) -> dict:
    node = best_node(run)
    return {
        "run": run.pk,
        "kernel": run.kernel.spec.to_dict(),
        "target": run.target,
        "node_id": node.node_id,
        "latency_s": node.latency,
        "structural_hash": node.shash,
        "trace": node.trace,  # tvm.s_tir.Trace.apply_json_to_schedule(trace, Schedule(mod))
    }


def top_records(run: Run, k: int) -> list[dict]:
    return [
        {
            "rank": i + 1,
            "node_id": n.node_id,
            "latency_s": n.latency,
            "structural_hash": n.shash,
            "created_by": n.created_by,
            "mutators": n.mutators,
            "decisions": n.decisions,
            "trace": n.trace,
        }
        for i, n in enumerate(valid_nodes(run, k))
    ]


def _add(zf: zipfile.ZipFile, name: str, data) -> None:
    """A file readable by everyone once unpacked (0644), whatever the server's umask."""
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def database_zip(run: Run, top: int | None = None) -> bytes:
    """A zip of ``database_workload.json`` + ``database_tuning_record.json`` (the ``top`` fastest
    valid schedules, all of them by default) and ``top_k.json``, in a folder named for the run."""
    nodes = list(valid_nodes(run, min(top or MAX_RECORDS, MAX_RECORDS)))
    if not nodes:
        raise NothingToExport(f"run {run.pk} has no correctly measured schedule yet")
    folder = base_name(run)
    with tempfile.TemporaryDirectory() as tmp:
        _, skipped = write_database(run.kernel.spec, run.target, [(n.trace, n.latency) for n in nodes], tmp)
        if skipped == len(nodes):
            raise NothingToExport(f"none of run {run.pk}'s stored traces applies with this TVM version")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in (WORKLOAD_FILE, RECORD_FILE):
                _add(zf, f"{folder}/{name}", (Path(tmp) / name).read_bytes())
            _add(zf, f"{folder}/top_k.json", json.dumps(top_records(run, min(len(nodes), 10)), indent=1))
            _add(
                zf,
                f"{folder}/README.txt",
                _DB_README.format(run=run.pk, kernel=run.kernel, target=run.target, n=len(nodes) - skipped),
            )
    return buf.getvalue()


_DB_README = """COLT run {run}: {n} measured schedules of {kernel} on {target}, fastest first in top_k.json.

Load it in TVM (0.27):

    from tvm.s_tir import meta_schedule as ms
    db = ms.database.JSONDatabase(work_dir="<this folder>")
    sch = db.query_schedule(mod, target, workload_name="main")   # the best record, applied

where mod is the kernel's IRModule (its PrimFunc named "main").
"""


# --- CSV -----------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, float):
        return repr(value)  # full precision: the ledger must sum to the run's total
    if value is None:
        return ""
    return value


def csv_lines(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """Rows as CSV text, a line at a time (for a streaming response)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in _chain(header, rows):
        writer.writerow([_cell(v) for v in row])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()


def _chain(header, rows):
    yield header
    yield from rows


LEDGER_HEADER = [
    "run",
    "kernel",
    "strategy",
    "call_id",
    "node_id",
    "model",
    "outcome",
    "escalation",
    "prompt_tokens",
    "completion_tokens",
    "usd",
    "latency_s",
    "mutators",
    "next_model",
    "error",
]


def ledger_rows(runs) -> Iterator[list]:
    """Every LLM call of ``runs``, one row each, in run then call order."""
    qs = (
        LLMCall.objects.filter(run__in=runs)
        .select_related("run__kernel")
        .order_by("run_id", "call_id")
        .iterator(chunk_size=2000)
    )
    for c in qs:
        yield [
            c.run_id,
            str(c.run.kernel),
            c.run.strategy,
            c.call_id,
            c.node_id,
            c.model,
            c.outcome,
            int(c.escalation),
            c.prompt_tokens,
            c.completion_tokens,
            c.usd,
            c.latency_s,
            ";".join(c.mutators or []),
            c.next_model,
            c.error,
        ]


#: the node history's columns: the node schema (search.engine.events.NodeRecord) without the
#: nested trace and decisions, which the trace and database downloads carry
NODES_HEADER = [f for f in NODE_FIELDS if f not in ("trace", "decisions")]


def node_rows(run: Run) -> Iterator[list]:
    for n in Node.objects.filter(run=run).order_by("node_id").values_list(*NODES_HEADER).iterator(chunk_size=2000):
        yield [";".join(v) if isinstance(v, list) else v for v in n]


def json_text(obj) -> str:
    return json.dumps(obj, indent=1)
