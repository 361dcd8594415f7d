"""Building and timing candidates on real hardware, out of process.

A :class:`Measurer` takes a batch of stored traces and returns one :class:`MeasureResult`
each. :class:`LocalMeasurer` compiles and times them in a TVM ``PopenPoolExecutor`` worker
(so that a schedule that crashes the compiler or runs for minutes kills a worker, not the
search), checks every output against the kernel's numpy reference, and then times it with
``time_evaluator`` (number, repeat, min_repeat_ms). A wrong result is a failed candidate.

With a cutoff (``measure(..., cutoff_s=...)``, the search's ``timing_cutoff`` times its best
latency) a candidate is first timed by two single runs; if the faster is already slower than the
cutoff, it is the candidate's latency (``coarse``) and the full timing is skipped: a schedule
1.5 times or more slower than the best in two runs will not be the best, and timing it in full
costs number x repeat of its runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from .workloads import KernelSpec

OK, WRONG, BUILD_ERROR, RUN_ERROR, TIMEOUT, NO_DEVICE = (
    "ok",
    "wrong",
    "build_error",
    "run_error",
    "timeout",
    "no_device",
)


@dataclass(frozen=True)
class MeasureConfig:
    """Timing settings; the authors used number 3, repeat 5, min_repeat_ms 100."""

    number: int = 3
    repeat: int = 5
    min_repeat_ms: int = 100
    timeout_s: float = 30.0
    check: bool = True


@dataclass
class MeasureResult:
    status: str
    latency_s: float | None = None  # the mean of the repeats
    repeats_s: list[float] = field(default_factory=list)
    build_s: float = 0.0
    max_error: float | None = None
    error: str = ""
    # timed by two single runs only (the faster kept): slower than the cutoff the search gave
    coarse: bool = False

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict:
        return asdict(self)


class Measurer(Protocol):
    """Builds and times candidates; ``None`` as a trace means the unscheduled kernel."""

    def measure(
        self, traces: Sequence[list | None], config: MeasureConfig | None = None, *, cutoff_s: float | None = None
    ) -> list[MeasureResult]:
        """One result per trace (None: the unscheduled kernel). With ``cutoff_s``, a candidate
        whose first two single runs are both slower than that may come back ``coarse``, timed by
        those runs alone; a measurer may ignore it and time everything in full."""
        ...

    def close(self) -> None: ...


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[2])


# --- the worker side -------------------------------------------------------------------------

_CACHE: dict = {}


def _worker_init(root: str) -> None:
    import sys

    if root not in sys.path:
        sys.path.insert(0, root)
    from search.engine.tvmenv import install_tensor_intrin_stub

    install_tensor_intrin_stub()


def _kernel_data(spec_dict: dict, target_name: str):
    """Per-process cache of the kernel's module, inputs and reference output."""
    from .compiler import make_target
    from .workloads import build_module, make_inputs, references

    spec = KernelSpec(spec_dict["op"], spec_dict["shape"], spec_dict["dtype"], module=spec_dict.get("module", ""))
    key = (spec.key, target_name)
    if key not in _CACHE:
        inputs = make_inputs(spec)
        _CACHE.clear()
        _CACHE[key] = (spec, build_module(spec), make_target(target_name), inputs, references(spec, inputs))
    return _CACHE[key]


def measure_in_worker(
    spec_dict: dict, target_name: str, trace_json: list | None, cfg: dict, rpc: dict | None = None
) -> dict:
    """Build, check and time one candidate. Runs in a worker process; returns a plain dict.
    With ``rpc`` (an :class:`RPCConfig` as a dict) the library is built here and uploaded to
    a TVM RPC server, which checks and times it on its device."""
    import numpy as np

    from .tvmenv import tvm as _tvm
    from .workloads import check_outputs, output_buffers

    tvm = _tvm()
    spec, mod, target, inputs, want = _kernel_data(spec_dict, target_name)
    start = time.perf_counter()
    try:
        if trace_json is not None:
            from .compiler import apply_trace_json

            mod = apply_trace_json(mod, trace_json).mod
        executable = tvm.compile(mod, target=target)
    except Exception as exc:  # noqa: BLE001 - any compiler failure marks the candidate invalid
        return MeasureResult(BUILD_ERROR, error=one_line(exc)).to_dict()
    build_s = time.perf_counter() - start
    kind = "cpu" if target.kind.name == "llvm" else target.kind.name
    session = None
    if rpc is not None:
        try:
            session = _connect(RPCConfig(**rpc))
        except Exception as exc:  # noqa: BLE001 - the measurement host is down: not this candidate's fault
            return MeasureResult(
                NO_DEVICE, build_s=build_s, error=f"RPC host {RPCConfig(**rpc).label()}: {one_line(exc)}"
            ).to_dict()
    dev = session.device(kind, 0) if session is not None else tvm.device(kind, 0)
    if not dev.exist:  # checked before loading: a CUDA library does not even load without a GPU
        where = f"the RPC host {rpc['host']}:{rpc['port']}" if rpc else "this host"
        return MeasureResult(NO_DEVICE, build_s=build_s, error=f"no {target.kind.name} device on {where}").to_dict()
    try:
        if session is not None:
            fn = _load_remote(executable, session)
        else:
            fn = executable.jit() if hasattr(executable, "jit") else executable
    except Exception as exc:  # noqa: BLE001 - this candidate's library does not load
        return MeasureResult(RUN_ERROR, build_s=build_s, error=one_line(exc)).to_dict()
    try:
        args = [tvm.runtime.tensor(a, dev) for a in inputs]
        outs = [tvm.runtime.tensor(np.zeros(shape, dtype), dev) for shape, dtype in output_buffers(spec)]
        args += outs
        fn["main"](*args)
        dev.sync()
        max_error = None
        if cfg.get("check", True):
            ok, max_error = check_outputs(spec, [o.numpy() for o in outs], want)
            if not ok:
                return MeasureResult(
                    WRONG, build_s=build_s, max_error=max_error, error="output differs from the numpy reference"
                ).to_dict()
        cutoff = cfg.get("cutoff_s")
        if cutoff:  # two single timed runs first (the check above warmed it): far slower than the cutoff, done
            first = min(float(x) for x in fn.time_evaluator("main", dev, number=1, repeat=2)(*args).results)
            if first > cutoff:
                return MeasureResult(OK, first, [first], build_s, max_error, coarse=True).to_dict()
        evaluator = fn.time_evaluator(
            "main", dev, number=cfg["number"], repeat=cfg["repeat"], min_repeat_ms=cfg["min_repeat_ms"]
        )
        res = evaluator(*args)
    except Exception as exc:  # noqa: BLE001
        return MeasureResult(RUN_ERROR, build_s=build_s, error=one_line(exc)).to_dict()
    repeats = [float(x) for x in res.results]
    return MeasureResult(OK, float(np.mean(repeats)), repeats, build_s, max_error).to_dict()


class MeasurementHostError(RuntimeError):
    """The measurement device is missing or unreachable (no GPU here, the RPC host down)."""


@dataclass(frozen=True)
class RPCConfig:
    """Where a measure-only host listens: a TVM RPC server (``python -m tvm.exec.rpc_server``),
    or, with ``key``, a TVM RPC tracker that hands out a server registered under that key."""

    host: str
    port: int
    key: str = ""
    session_timeout_s: float = 120.0

    @classmethod
    def parse(cls, text: str) -> RPCConfig:
        """``host:port`` (a server) or ``host:port/key`` (a tracker and a device key)."""
        address, _, key = text.strip().partition("/")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"an RPC address is host:port or host:port/key, not {text!r}")
        return cls(host, int(port), key)

    def label(self) -> str:
        return f"{self.host}:{self.port}" + (f"/{self.key}" if self.key else "")


def _connect(rpc: RPCConfig):
    """A session on the RPC server (directly, or the one a tracker hands out for the key)."""
    from tvm import rpc as tvm_rpc

    if rpc.key:
        return tvm_rpc.connect_tracker(rpc.host, rpc.port).request(rpc.key, session_timeout=rpc.session_timeout_s)
    return tvm_rpc.connect(rpc.host, rpc.port, session_timeout=rpc.session_timeout_s)


def _load_remote(executable, session):
    """Export the built library, upload it to the RPC server and load it there."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "candidate.so")
        executable.export_library(path)
        session.upload(path)
    return session.load_module("candidate.so")


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: its type and the last line of its message (TVM's errors end with the reason)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {msg}"[:500]


# --- the search side -------------------------------------------------------------------------


class LocalMeasurer:
    """Builds on this host and measures here, or (``rpc``) on a measure-only host over TVM's
    RPC; one candidate at a time (timings must not overlap)."""

    def __init__(
        self, spec: KernelSpec, target_name: str, config: MeasureConfig | None = None, rpc: RPCConfig | None = None
    ):
        from .tvmenv import tvm as _tvm

        _tvm()
        from tvm.support.popen_pool import PopenPoolExecutor

        self.spec = spec
        self.target_name = target_name
        self.config = config or MeasureConfig()
        self.rpc = rpc
        root = _project_root()
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
        )
        self._pool = PopenPoolExecutor(
            max_workers=1,
            timeout=self.config.timeout_s,
            initializer=_worker_init,
            initargs=(root,),
        )

    def measure(
        self, traces, config: MeasureConfig | None = None, *, cutoff_s: float | None = None
    ) -> list[MeasureResult]:
        cfg = {**asdict(config or self.config), "cutoff_s": cutoff_s}
        results = []
        for trace_json in traces:
            future = self._pool.submit(
                measure_in_worker,
                self.spec.to_dict(),
                self.target_name,
                trace_json,
                cfg,
                asdict(self.rpc) if self.rpc else None,
            )
            try:
                results.append(MeasureResult(**future.result()))
            except TimeoutError:
                results.append(MeasureResult(TIMEOUT, error=f"took longer than {self.config.timeout_s:.0f} s"))
            except Exception as exc:  # noqa: BLE001 - the worker died (a crash in generated code)
                results.append(MeasureResult(RUN_ERROR, error=one_line(exc)))
            if results[-1].status == NO_DEVICE:
                # not the candidate's fault: nothing here can be timed, so stop rather than
                # spend the trial budget on failures (the run fails with this and can resume)
                raise MeasurementHostError(results[-1].error)
        return results

    def close(self) -> None:
        self._pool.shutdown()
