"""Kernels as validated specs (operator, shapes, dtype), never code.

A :class:`KernelSpec` names an operator from :data:`OPERATORS` and gives its shape
parameters and dtype. :func:`validate` checks it; :func:`build_primfunc` turns it into a
TVM PrimFunc with TE; :func:`reference` computes the expected output with numpy, and
:func:`flops` states the work. Nothing here evaluates user text: shapes are integers
checked against bounds, operators and dtypes are looked up by name.

TVM is imported lazily so that validating a spec (a web form, the CLI) stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_DIM = 1 << 16
MAX_BYTES = 512 << 20  # inputs + output
MAX_FLOPS = 50e9  # above this, one measurement takes many seconds on a CPU
SUPPORTED_DTYPES = ("float32", "float16", "int8")  # the built-in operators (see LOW_PRECISION)
#: the operators that also come in float16 (float16 accumulation) and int8 (int32 accumulation
#: and output), as TVM's llvm target compiles them
LOW_PRECISION = ("gemm", "batch_matmul", "batch_matmul_nt", "conv2d")
TIR_OP = "tir"  # a kernel brought as a TVM IRModule (JSON)
#: buffer dtypes a brought kernel may use, and how closely its output must match the reference
TIR_DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64", "bool")
MAX_MODULE_CHARS = 4 << 20


class SpecError(ValueError):
    """A kernel spec that cannot be built: unknown operator, bad shape, bad dtype."""


@dataclass(frozen=True)
class OpDef:
    name: str
    description: str
    params: tuple[str, ...]
    inputs: Callable[[Mapping[str, int]], list[tuple[str, tuple[int, ...]]]]
    output: Callable[[Mapping[str, int]], tuple[int, ...]]
    flops: Callable[[Mapping[str, int]], float]
    reference: Callable[..., np.ndarray]
    build: Callable[..., list]  # (shape, dtype) -> [te.Tensor inputs..., output]
    fixed: Mapping[str, int] = field(default_factory=dict)  # non-shape params with defaults
    #: stages (block names) that must stay stages of their own: the built PrimFunc marks them
    #: with :data:`KEEP_STAGE` (see :func:`build_primfunc`)
    keep: tuple[str, ...] = ()


# --- numpy references (float64 accumulation) ------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ref_gemm(s, a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


def _ref_batch_matmul_nt(s, a, b):
    return np.einsum("bik,bjk->bij", a.astype(np.float64), b.astype(np.float64))


def _ref_batch_matmul(s, a, b):
    return np.einsum("bik,bkj->bij", a.astype(np.float64), b.astype(np.float64))


def _ref_attention(s, q, k, v):
    scores = np.einsum("bid,bjd->bij", q.astype(np.float64), k.astype(np.float64))
    return _softmax(scores / math.sqrt(s["D"])) @ v.astype(np.float64)


def _ref_conv2d(s, x, w):
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    pad, st = s["pad"], s["stride"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = xp.shape
    k, _, r, q = w.shape
    oh, ow = (h - r) // st + 1, (wd - q) // st + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (r, q), axis=(2, 3))[:, :, ::st, ::st]
    return np.einsum("nchwrs,kcrs->nkhw", win[:, :, :oh, :ow], w)


def _ref_gated_mlp(s, x, w1, w3, w2):
    x = x.astype(np.float64)
    g = x @ w1.astype(np.float64)
    u = x @ w3.astype(np.float64)
    return (g / (1.0 + np.exp(-g)) * u) @ w2.astype(np.float64)


def _ref_layer_norm(s, x, gamma, beta):
    x = x.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def _ref_softmax(s, x):
    return _softmax(x.astype(np.float64))


# --- TE builders -----------------------------------------------------------------------


def _acc(x, dtype):
    """A product's factor in the accumulation type: int8 kernels accumulate in int32."""
    return x.astype("int32") if dtype == "int8" else x


def _te_gemm(s, dtype):
    from tvm import te

    a = te.placeholder((s["M"], s["K"]), dtype, name="A")
    b = te.placeholder((s["K"], s["N"]), dtype, name="B")
    k = te.reduce_axis((0, s["K"]), name="k")
    c = te.compute((s["M"], s["N"]), lambda i, j: te.sum(_acc(a[i, k], dtype) * _acc(b[k, j], dtype), axis=k), name="C")
    return [a, b, c]


def _te_batch_matmul_nt(s, dtype):
    from tvm import te

    a = te.placeholder((s["B"], s["M"], s["K"]), dtype, name="A")
    b = te.placeholder((s["B"], s["N"], s["K"]), dtype, name="B")
    k = te.reduce_axis((0, s["K"]), name="k")
    c = te.compute(
        (s["B"], s["M"], s["N"]),
        lambda n, i, j: te.sum(_acc(a[n, i, k], dtype) * _acc(b[n, j, k], dtype), axis=k),
        name="C",
    )
    return [a, b, c]


def _te_batch_matmul(s, dtype):
    from tvm import te

    a = te.placeholder((s["B"], s["M"], s["K"]), dtype, name="A")
    b = te.placeholder((s["B"], s["K"], s["N"]), dtype, name="B")
    k = te.reduce_axis((0, s["K"]), name="k")
    c = te.compute(
        (s["B"], s["M"], s["N"]),
        lambda n, i, j: te.sum(_acc(a[n, i, k], dtype) * _acc(b[n, k, j], dtype), axis=k),
        name="C",
    )
    return [a, b, c]


def _te_softmax_rows(x, shape, prefix="", scale=None):
    """Numerically stable softmax over the last axis of a 2-D or 3-D TE tensor; with ``scale``
    (> 0), softmax(scale * x), the scale applied once per element before the exponential. The
    exponential is TOPI's ``fast_exp`` (a range reduction and a degree-6 polynomial that
    vectorizes; relative error ~1e-7): ``exp`` lowers to a scalar libm call per element (2.5 ns
    per element against 0.37 on one znver3 core, numpy's SIMD exp 1.3 ns). Its stage,
    ``T_fast_exp``, must be kept (:attr:`OpDef.keep`): inlined into the consumers it would be
    recomputed for every multiply-add of attention's second matmul."""
    from tvm import te

    ex = _te_exp_rows(x, shape, prefix, scale)
    r2 = te.reduce_axis((0, shape[-1]), name="r2")
    lead = shape[:-1]
    sm = te.compute(lead, lambda *i: te.sum(ex[i + (r2,)], axis=r2), name=prefix + "sum")
    return te.compute(shape, lambda *i: ex[i] / sm[i[:-1]], name=prefix + "softmax")


def _te_exp_rows(x, shape, prefix="", scale=None):
    """The softmax's numerator: ``fast_exp(scale * (x - the row's max))`` over the last axis,
    before any normalization (:func:`_te_softmax_rows` divides by the row sums; attention
    divides after its second matmul)."""
    from tvm import te, topi

    r1 = te.reduce_axis((0, shape[-1]), name="r1")
    mx = te.compute(shape[:-1], lambda *i: te.max(x[i + (r1,)], axis=r1), name=prefix + "max")

    def shifted(*i):
        d = x[i] - mx[i[:-1]]
        return d if scale is None else d * scale

    return topi.fast_exp(te.compute(shape, shifted, name=prefix + "shifted"))


#: the block annotation MetaSchedule's AutoInline reads to leave a stage a stage of its own;
#: where inlining would recompute an expensive expression for every step of a consumer's
#: reduction, or undo a layout change the consumer's vector loop wants. (The compute-location
#: sampling may still inline it: compiler.keep_stages rejects those schedules.)
KEEP_STAGE = {"meta_schedule.inline_rule": "disable"}


def _te_attention(s, dtype):
    """softmax(Q K^T / sqrt(D)) V per head, in stages a CPU schedule can vectorize:

    - K is transposed into a stage of its own (the scores' reduction then reads keys contiguously
      along the vector loop, as BLAS packs its operands; where to compute it is the schedule's
      choice, inlining it back is not);
    - the 1/sqrt(D) scale is applied once per score before the exponential rather than once per
      multiply-add of Q K^T;
    - the normalization is deferred, as FlashAttention does: the second matmul multiplies the
      (kept) exponentials by V, and each output row is divided by its sum afterwards, S x D
      divisions instead of S x S. Normalized first (bench/forms.py's ``-staged`` layers, the
      library's formulation until 2026-12-07), the division is inlined into the second
      matmul's multiply-adds, and 26 of 144 random schedules of it computed a wrong result
      (TVM 0.27 miscompiles some of them; the check rejects them), none of 144 of this one
      (bench/samples.py, docs/benchmarks.md);
    - the row sums are stored (token, head): read in the output's own order, MetaSchedule's
      multi-level tiling takes the division for a write cache of the second matmul and fuses
      it into that matmul's tiles, which the sums' own loop nest forbids (generating the design
      space fails)."""
    from tvm import te, tirx

    b, n, d = s["B"], s["S"], s["D"]
    q = te.placeholder((b, n, d), dtype, name="Q")
    k = te.placeholder((b, n, d), dtype, name="K")
    v = te.placeholder((b, n, d), dtype, name="V")
    kt = te.compute((b, d, n), lambda h, c, j: k[h, j, c], name="K_T")
    rk = te.reduce_axis((0, d), name="rk")
    scores = te.compute((b, n, n), lambda h, i, j: te.sum(q[h, i, rk] * kt[h, rk, j], axis=rk), name="QK")
    ex = _te_exp_rows(scores, (b, n, n), prefix="P_", scale=tirx.const(1.0 / math.sqrt(d), dtype))
    r2 = te.reduce_axis((0, n), name="r2")
    sums = te.compute((n, b), lambda i, h: te.sum(ex[h, i, r2], axis=r2), name="P_sum")
    rv = te.reduce_axis((0, n), name="rv")
    pv = te.compute((b, n, d), lambda h, i, j: te.sum(ex[h, i, rv] * v[h, rv, j], axis=rv), name="PV")
    out = te.compute((b, n, d), lambda h, i, j: pv[h, i, j] / sums[i, h], name="O")
    return [q, k, v, out]


def _te_conv2d(s, dtype):
    from tvm import te, tirx

    n, c, h, w, k, r = s["N"], s["C"], s["H"], s["W"], s["K"], s["R"]
    pad, st = s["pad"], s["stride"]
    x = te.placeholder((n, c, h, w), dtype, name="X")
    wt = te.placeholder((k, c, r, r), dtype, name="W")
    xp = te.compute(
        (n, c, h + 2 * pad, w + 2 * pad),
        lambda b, ci, y, z: tirx.if_then_else(
            tirx.all(y >= pad, y < h + pad, z >= pad, z < w + pad),
            x[b, ci, y - pad, z - pad],
            tirx.const(0, dtype),
        ),
        name="pad",
    )
    oh, ow = (h + 2 * pad - r) // st + 1, (w + 2 * pad - r) // st + 1
    rc = te.reduce_axis((0, c), name="rc")
    ry = te.reduce_axis((0, r), name="ry")
    rx = te.reduce_axis((0, r), name="rx")
    out = te.compute(
        (n, k, oh, ow),
        lambda b, ko, y, z: te.sum(
            _acc(xp[b, rc, y * st + ry, z * st + rx], dtype) * _acc(wt[ko, rc, ry, rx], dtype), axis=[rc, ry, rx]
        ),
        name="conv",
    )
    return [x, wt, out]


def _te_gated_mlp(s, dtype):
    """down(silu(X W_gate) * (X W_up)). silu is a stage of its own: inlined into the down
    projection it would recompute a sigmoid for every multiply-add (H times per element). The
    product with the up projection stays in the down projection's reduction (an elementwise
    stage reading both projections makes TVM 0.27's multi-level tiling fail: it fuses a consumer
    of two producers under one of them)."""
    from tvm import te, tirx

    m, hdim, inter = s["M"], s["H"], s["I"]
    x = te.placeholder((m, hdim), dtype, name="X")
    w1 = te.placeholder((hdim, inter), dtype, name="W_gate")
    w3 = te.placeholder((hdim, inter), dtype, name="W_up")
    w2 = te.placeholder((inter, hdim), dtype, name="W_down")
    k1 = te.reduce_axis((0, hdim), name="k1")
    k3 = te.reduce_axis((0, hdim), name="k3")
    k2 = te.reduce_axis((0, inter), name="k2")
    g = te.compute((m, inter), lambda i, j: te.sum(x[i, k1] * w1[k1, j], axis=k1), name="gate")
    u = te.compute((m, inter), lambda i, j: te.sum(x[i, k3] * w3[k3, j], axis=k3), name="up")
    act = te.compute((m, inter), lambda i, j: g[i, j] * tirx.sigmoid(g[i, j]), name="silu")
    out = te.compute((m, hdim), lambda i, j: te.sum(act[i, k2] * u[i, k2] * w2[k2, j], axis=k2), name="down")
    return [x, w1, w3, w2, out]


def _te_layer_norm(s, dtype):
    from tvm import te, tirx

    m, n = s["M"], s["N"]
    x = te.placeholder((m, n), dtype, name="X")
    gamma = te.placeholder((n,), dtype, name="gamma")
    beta = te.placeholder((n,), dtype, name="beta")
    r1 = te.reduce_axis((0, n), name="r1")
    r2 = te.reduce_axis((0, n), name="r2")
    inv_n = tirx.const(1.0 / n, dtype)
    mean = te.compute((m,), lambda i: te.sum(x[i, r1] * inv_n, axis=r1), name="mean")
    var = te.compute(
        (m,),
        lambda i: te.sum((x[i, r2] - mean[i]) * (x[i, r2] - mean[i]) * inv_n, axis=r2),
        name="var",
    )
    out = te.compute(
        (m, n),
        lambda i, j: (x[i, j] - mean[i]) * tirx.rsqrt(var[i] + tirx.const(1e-5, dtype)) * gamma[j] + beta[j],
        name="norm",
    )
    return [x, gamma, beta, out]


def _te_softmax(s, dtype):
    from tvm import te

    x = te.placeholder((s["M"], s["N"]), dtype, name="X")
    return [x, _te_softmax_rows(x, (s["M"], s["N"]))]


def _conv_out(s):
    oh = (s["H"] + 2 * s["pad"] - s["R"]) // s["stride"] + 1
    ow = (s["W"] + 2 * s["pad"] - s["R"]) // s["stride"] + 1
    return (s["N"], s["K"], oh, ow)


OPERATORS: dict[str, OpDef] = {
    op.name: op
    for op in [
        OpDef(
            "gemm",
            "C[M,N] = A[M,K] @ B[K,N]",
            ("M", "N", "K"),
            lambda s: [("A", (s["M"], s["K"])), ("B", (s["K"], s["N"]))],
            lambda s: (s["M"], s["N"]),
            lambda s: 2.0 * s["M"] * s["N"] * s["K"],
            _ref_gemm,
            _te_gemm,
        ),
        OpDef(
            "batch_matmul_nt",
            "C[B,M,N] = A[B,M,K] @ B[B,N,K]^T (attention scores Q K^T)",
            ("B", "M", "N", "K"),
            lambda s: [("A", (s["B"], s["M"], s["K"])), ("B", (s["B"], s["N"], s["K"]))],
            lambda s: (s["B"], s["M"], s["N"]),
            lambda s: 2.0 * s["B"] * s["M"] * s["N"] * s["K"],
            _ref_batch_matmul_nt,
            _te_batch_matmul_nt,
        ),
        OpDef(
            "batch_matmul",
            "C[B,M,N] = A[B,M,K] @ B[B,K,N] (softmax(S) V)",
            ("B", "M", "N", "K"),
            lambda s: [("A", (s["B"], s["M"], s["K"])), ("B", (s["B"], s["K"], s["N"]))],
            lambda s: (s["B"], s["M"], s["N"]),
            lambda s: 2.0 * s["B"] * s["M"] * s["N"] * s["K"],
            _ref_batch_matmul,
            _te_batch_matmul,
        ),
        OpDef(
            "attention",
            "O = softmax(Q K^T / sqrt(D)) V per head; B heads, S tokens, D head dim",
            ("B", "S", "D"),
            lambda s: [(n, (s["B"], s["S"], s["D"])) for n in ("Q", "K", "V")],
            lambda s: (s["B"], s["S"], s["D"]),
            lambda s: 4.0 * s["B"] * s["S"] * s["S"] * s["D"] + 5.0 * s["B"] * s["S"] * s["S"],
            _ref_attention,
            _te_attention,
            keep=("K_T", "T_fast_exp"),
        ),
        OpDef(
            "conv2d",
            "NCHW conv, KCRR weights, square R x R window",
            ("N", "C", "H", "W", "K", "R", "stride", "pad"),
            lambda s: [("X", (s["N"], s["C"], s["H"], s["W"])), ("W", (s["K"], s["C"], s["R"], s["R"]))],
            _conv_out,
            lambda s: 2.0 * math.prod(_conv_out(s)) * s["C"] * s["R"] * s["R"],
            _ref_conv2d,
            _te_conv2d,
            fixed={"stride": 1, "pad": 1},
        ),
        OpDef(
            "gated_mlp",
            "(silu(X W_gate) * (X W_up)) W_down, the gated MLP of Llama-style models",
            ("M", "H", "I"),
            lambda s: [
                ("X", (s["M"], s["H"])),
                ("W_gate", (s["H"], s["I"])),
                ("W_up", (s["H"], s["I"])),
                ("W_down", (s["I"], s["H"])),
            ],
            lambda s: (s["M"], s["H"]),
            lambda s: 6.0 * s["M"] * s["H"] * s["I"] + 4.0 * s["M"] * s["I"],
            _ref_gated_mlp,
            _te_gated_mlp,
            keep=("silu",),
        ),
        OpDef(
            "layer_norm",
            "layer norm over the last axis with gamma and beta",
            ("M", "N"),
            lambda s: [("X", (s["M"], s["N"])), ("gamma", (s["N"],)), ("beta", (s["N"],))],
            lambda s: (s["M"], s["N"]),
            lambda s: 8.0 * s["M"] * s["N"],
            _ref_layer_norm,
            _te_layer_norm,
        ),
        OpDef(
            "softmax",
            "softmax over the last axis",
            ("M", "N"),
            lambda s: [("X", (s["M"], s["N"]))],
            lambda s: (s["M"], s["N"]),
            lambda s: 5.0 * s["M"] * s["N"],
            _ref_softmax,
            _te_softmax,
            keep=("T_fast_exp",),
        ),
    ]
}


@dataclass(frozen=True)
class KernelSpec:
    """A kernel: an operator name, its shape parameters and a dtype. Plain data.

    ``op == "tir"`` is a kernel brought as a TVM IRModule in TVM's JSON form (``module``: what
    ``tvm.ir.save_json`` writes, what MetaSchedule stores in ``database_workload.json``, what
    a model's task extraction yields); its shapes and dtypes are the PrimFunc's buffers.
    """

    op: str
    shape: Mapping[str, int]
    dtype: str = "float32"
    name: str = ""
    module: str = field(default="", repr=False)

    def to_dict(self) -> dict:
        data = {"op": self.op, "shape": dict(self.shape), "dtype": self.dtype, "name": self.name}
        if self.module:
            data["module"] = self.module
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> KernelSpec:
        if not isinstance(data, Mapping):
            raise SpecError("a kernel spec is an object with op, shape and dtype")
        shape = data.get("shape")
        if not isinstance(shape, Mapping):
            raise SpecError("shape must be an object of named integer dimensions")
        return validate(
            cls(
                op=str(data.get("op", "")),
                shape=dict(shape),
                dtype=str(data.get("dtype", "float32")),
                name=str(data.get("name", "")),
                module=data.get("module") or "",
            )
        )

    @property
    def key(self) -> str:
        """Canonical identity: operator, dtype and dimensions (not the display name)."""
        if self.op == TIR_OP:
            return f"{TIR_OP}|{self.dtype}|{hashlib.sha256(self.module.encode()).hexdigest()[:32]}"
        dims = ",".join(f"{k}={self.shape[k]}" for k in sorted(self.shape))
        return f"{self.op}|{self.dtype}|{dims}"

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.op == TIR_OP:
            return f"{TIR_OP}:{self.key.rsplit('|', 1)[1][:8]}"
        dims = ",".join(f"{k}={v}" for k, v in self.shape.items())
        return f"{self.op}({dims})"


def parse_shape(text: str) -> dict[str, str]:
    """``"M=256,N=256,K=512"`` -> ``{"M": "256", ...}``; :func:`validate` checks the values."""
    shape = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"write dimensions as NAME=INT pairs separated by commas, got {part!r}")
        shape[key.strip()] = value.strip()
    if not shape:
        raise SpecError("give the dimensions, e.g. M=256,N=256,K=256")
    return shape


_KERNEL_NAME = re.compile(r"[A-Za-z0-9._-]{0,64}")
#: a dimension typed as text: ASCII digits only (str.isdigit admits "²", which int() refuses), and
#: few of them (int() refuses thousands of digits; MAX_DIM has far fewer)
_INT_TEXT = re.compile(r"-?[0-9]{1,12}")


def validate(spec: KernelSpec) -> KernelSpec:
    """Return a normalized copy of ``spec`` or raise :class:`SpecError` with a clear message."""
    if spec.op == TIR_OP:
        return _validate_tir(spec)
    if spec.module:
        raise SpecError(f"a module is given only with op {TIR_OP!r}")
    op = OPERATORS.get(spec.op)
    if op is None:
        raise SpecError(f"unknown operator {spec.op!r}; known: {', '.join(sorted(OPERATORS))}")
    if spec.dtype not in SUPPORTED_DTYPES:
        raise SpecError(f"dtype {spec.dtype!r} not supported; supported: {', '.join(SUPPORTED_DTYPES)}")
    if spec.dtype != "float32" and spec.op not in LOW_PRECISION:
        raise SpecError(f"{spec.op} is float32 only; {spec.dtype} is offered for {', '.join(LOW_PRECISION)}")
    shape: dict[str, int] = {}
    unknown = set(spec.shape) - set(op.params)
    if unknown:
        raise SpecError(f"{op.name} has no dimension {', '.join(sorted(unknown))}; it takes {', '.join(op.params)}")
    for p in op.params:
        value = spec.shape.get(p, op.fixed.get(p))
        if value is None:
            raise SpecError(f"{op.name} needs dimension {p} (takes {', '.join(op.params)})")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
                value = int(value)
            else:
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise SpecError(f"dimension {p} must be an integer, got {shown}")
        value = int(value)
        low = 0 if p == "pad" else 1
        if value < low:
            raise SpecError(f"dimension {p} must be {'non-negative' if low == 0 else 'positive'}, got {value}")
        if value > MAX_DIM:
            raise SpecError(f"dimension {p}={value} is larger than {MAX_DIM}")
        shape[p] = value
    if op.name == "conv2d":
        if shape["R"] > shape["H"] + 2 * shape["pad"] or shape["R"] > shape["W"] + 2 * shape["pad"]:
            raise SpecError("conv2d window R is larger than the padded input")
        if shape["pad"] >= shape["R"]:
            raise SpecError("conv2d pad must be smaller than the window R")
    if not isinstance(spec.name, str) or not _KERNEL_NAME.fullmatch(spec.name):
        raise SpecError("a kernel name is 0-64 letters, digits, '.', '_' or '-'")
    width = np.dtype(spec.dtype).itemsize
    nbytes = width * sum(math.prod(s) for _, s in op.inputs(shape)) + 4 * math.prod(op.output(shape))
    if nbytes > MAX_BYTES:
        raise SpecError(f"tensors take {nbytes / 2**20:.0f} MiB; the limit is {MAX_BYTES >> 20} MiB")
    work = op.flops(shape)
    if work > MAX_FLOPS:
        raise SpecError(f"{work / 1e9:.1f} GFLOP per call is too much to measure; the limit is {MAX_FLOPS / 1e9:.0f}")
    return KernelSpec(op=op.name, shape=shape, dtype=spec.dtype, name=spec.name)


def flops(spec: KernelSpec) -> float:
    if spec.op == TIR_OP:
        return _tir_info(spec.module).flops
    return OPERATORS[spec.op].flops(spec.shape)


def input_shapes(spec: KernelSpec) -> list[tuple[str, tuple[int, ...]]]:
    if spec.op == TIR_OP:
        return [(b.name, b.shape) for b in _tir_info(spec.module).inputs]
    return OPERATORS[spec.op].inputs(spec.shape)


def output_shape(spec: KernelSpec) -> tuple[int, ...]:
    return output_buffers(spec)[0][0]


def output_buffers(spec: KernelSpec) -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype) of each output, in parameter order (built-in operators have one)."""
    if spec.op == TIR_OP:
        return [(b.shape, b.dtype) for b in _tir_info(spec.module).outputs]
    return [(OPERATORS[spec.op].output(spec.shape), "int32" if spec.dtype == "int8" else spec.dtype)]


def make_inputs(spec: KernelSpec, seed: int = 0) -> list[np.ndarray]:
    """Deterministic inputs, the same for every candidate of a kernel: floats in [-1, 1) for the
    built-in operators; for a brought module floats in [0.25, 1) (a model's tasks take variances,
    square roots and logarithms), 8-bit integers in [-4, 4], wider integers zero (they are often
    indices: zero is in bounds)."""
    rng = np.random.default_rng(seed)
    if spec.op != TIR_OP:
        if spec.dtype == "int8":
            return [rng.integers(-4, 5, size=shp).astype("int8") for _, shp in input_shapes(spec)]
        return [rng.uniform(-1.0, 1.0, size=shp).astype(spec.dtype) for _, shp in input_shapes(spec)]
    arrays = []
    for b in _tir_info(spec.module).inputs:
        if b.dtype.startswith("float"):
            arrays.append(rng.uniform(0.25, 1.0, size=b.shape).astype(b.dtype))
        elif b.dtype in ("int8", "uint8"):
            low = 0 if b.dtype == "uint8" else -4
            arrays.append(rng.integers(low, 5, size=b.shape).astype(b.dtype))
        else:
            arrays.append(np.zeros(b.shape, b.dtype))
    return arrays


def reference(spec: KernelSpec, inputs: list[np.ndarray]) -> np.ndarray:
    return references(spec, inputs)[0]


def references(spec: KernelSpec, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The expected outputs: numpy for the built-in operators; for a brought module, the
    unscheduled module itself compiled for this host's CPU (its semantics are the reference)."""
    if spec.op != TIR_OP:
        return [OPERATORS[spec.op].reference(spec.shape, *inputs)]
    import tvm

    executable = tvm.compile(_tir_info(spec.module).mod, target=tvm.target.Target({"kind": "llvm"}))
    dev = tvm.cpu(0)
    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    outs = [tvm.runtime.tensor(np.zeros(shp, dt), dev) for shp, dt in output_buffers(spec)]
    executable.jit()["main"](*args, *outs)
    return [o.numpy() for o in outs]


#: largest relative error accepted, by output dtype (integers must match exactly)
TOLERANCE = {"float32": 1e-3, "float64": 1e-6, "float16": 2e-2}


def check_output(spec: KernelSpec, got: np.ndarray, want: np.ndarray) -> tuple[bool, float]:
    """Compare a kernel's output with the reference; returns (ok, max relative error)."""
    if got.shape != want.shape:
        return False, float("inf")
    if got.dtype.kind in "iub":
        err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0))
        return err == 0.0, err
    tolerance = TOLERANCE.get(str(got.dtype), 1e-3)
    finite = np.isfinite(want)
    if not np.array_equal(np.isfinite(got), finite):  # a reference's inf/nan must be reproduced
        return False, float("inf")
    got, want = got[finite].astype(np.float64), want[finite].astype(np.float64)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    err = float(np.abs(got - want).max(initial=0.0)) / scale
    return err <= tolerance, err


def check_outputs(spec: KernelSpec, gots: list[np.ndarray], wants: list[np.ndarray]) -> tuple[bool, float]:
    """:func:`check_output` over every output; the worst error."""
    worst, ok = 0.0, len(gots) == len(wants)
    for got, want in zip(gots, wants, strict=False):
        good, err = check_output(spec, got, want)
        ok, worst = ok and good, max(worst, err)
    return ok, worst


def build_primfunc(spec: KernelSpec):
    """The unscheduled TVM PrimFunc of a validated spec."""
    if spec.op == TIR_OP:
        return _tir_info(spec.module).mod["main"]
    from tvm import te

    spec = validate(spec)
    op = OPERATORS[spec.op]
    func = te.create_prim_func(op.build(spec.shape, spec.dtype))
    if not op.keep:
        return func
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    ((key, value),) = KEEP_STAGE.items()
    for name in op.keep:
        sch.annotate(sch.get_sblock(name), key, value)
    return sch.mod["main"]


def build_module(spec: KernelSpec):
    if spec.op == TIR_OP:
        return _tir_info(spec.module).mod
    import tvm

    return tvm.IRModule({"main": build_primfunc(spec)})


# --- kernels brought as TVM IRModules (JSON) ---------------------------------------------------


@dataclass(frozen=True)
class TirBuffer:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class TirInfo:
    mod: Any  # tvm.IRModule with one PrimFunc, "main"
    inputs: tuple[TirBuffer, ...]
    outputs: tuple[TirBuffer, ...]
    flops: float
    dtype: str  # the first output's


def module_text(data: str) -> str:
    """The module JSON from what a user may bring: ``tvm.ir.save_json``'s text, one line of
    MetaSchedule's ``database_workload.json`` (``["<hash>", "<base64>"]``), or that file with
    exactly one line. Raises :class:`SpecError`; never evaluates anything."""
    if not isinstance(data, str) or not data.strip():
        raise SpecError("the module is empty")
    if len(data) > MAX_MODULE_CHARS:
        raise SpecError(f"the module is {len(data) >> 10} KiB; the limit is {MAX_MODULE_CHARS >> 20} MiB")
    lines = [line for line in data.strip().splitlines() if line.strip()]
    if len(lines) > 1 and all(line.lstrip().startswith("[") for line in lines):
        raise SpecError(f"the workload file holds {len(lines)} workloads; bring one line of it")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise SpecError(f"the module is not JSON: {exc}") from None
    if isinstance(doc, list):
        if len(doc) != 2 or not all(isinstance(x, str) for x in doc):
            raise SpecError('a workload line is ["<structural hash>", "<base64 module>"]')
        try:
            return base64.b64decode(doc[1], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise SpecError("the workload line's module is not base64 JSON") from None
    if not isinstance(doc, dict) or "nodes" not in doc or not ({"root", "root_index"} & set(doc)):
        raise SpecError("the module is not in TVM's JSON form (an object with a root and nodes)")
    return data


def _validate_tir(spec: KernelSpec) -> KernelSpec:
    text = module_text(spec.module)
    if not isinstance(spec.name, str) or not _KERNEL_NAME.fullmatch(spec.name):
        raise SpecError("a kernel name is 0-64 letters, digits, '.', '_' or '-'")
    if spec.shape:
        raise SpecError("a brought module's shapes are its buffers'; give no dimensions")
    info = _tir_info(text)
    return KernelSpec(op=TIR_OP, shape={}, dtype=info.dtype, name=spec.name, module=text)


#: parts of an operator name that reach outside the kernel: foreign functions (``call_extern``
#: links any libc symbol, ``system`` included), packed functions, raw LLVM intrinsics, handles
_FORBIDDEN_OP_PARTS = ("call", "extern", "packed", "llvm", "asm", "struct", "handle", "address", "thread", "trace")


def _check_ops(text: str) -> None:
    """A brought module may compute, not call out: only ``tirx.*``/``prim.*`` operators, and no string
    immediates (the names foreign calls take). Checked on the JSON, before TVM loads it."""
    try:
        nodes = json.loads(text).get("nodes", [])
    except (ValueError, AttributeError):
        raise SpecError("the module is not in TVM's JSON form") from None
    for node in nodes:
        kind = node.get("type") or node.get("type_key") if isinstance(node, dict) else None
        if kind and "StringImm" in kind:
            raise SpecError("the module holds a string immediate (a foreign call's name); it may only compute")
        if kind in ("ir.Op", "Op"):
            name = node.get("data") if isinstance(node.get("data"), str) else str(node.get("repr_str", ""))
            prefix, _, op = name.partition(".")
            if prefix not in ("tirx", "prim") or any(part in op for part in _FORBIDDEN_OP_PARTS):
                raise SpecError(f"the module calls {name!r}; a brought kernel may only use TIR's math operators")


@functools.lru_cache(maxsize=64)
def _tir_info(text: str) -> TirInfo:
    import tvm
    from tvm import s_tir

    _check_ops(text)
    try:
        obj = tvm.ir.load_json(text)
    except Exception as exc:  # noqa: BLE001 - any loader failure: not a module
        raise SpecError(f"TVM cannot load the module: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(obj, tvm.tirx.PrimFunc):
        funcs = [obj]
    elif isinstance(obj, tvm.IRModule):
        funcs = [f for _, f in obj.functions.items()]
    else:
        raise SpecError(f"the JSON holds a {type(obj).__name__}, not an IRModule")
    prims = [f for f in funcs if isinstance(f, tvm.tirx.PrimFunc)]
    if len(prims) != 1 or len(funcs) != 1:
        raise SpecError(f"the module must hold exactly one TIR PrimFunc; it holds {len(funcs)} function(s)")
    func = prims[0]
    if isinstance(obj, tvm.IRModule) and [gv.name_hint for gv in obj.get_global_vars()] == ["main"]:
        mod = obj  # unchanged: its structural hash is what a MetaSchedule database is keyed by
    else:
        mod = tvm.IRModule({"main": func})
    buffers = []
    for param in func.params:
        ty = getattr(param, "ty", None)
        if not isinstance(ty, tvm.tirx.BufferType):
            raise SpecError(f"parameter {param.name} is not a buffer")
        shape = []
        for dim in ty.shape:
            if not isinstance(dim, tvm.tirx.IntImm):
                raise SpecError(
                    f"buffer {param.name} has a dynamic dimension ({dim}); give the kernel with fixed shapes"
                )
            shape.append(int(dim))
        if any(d <= 0 or d > MAX_DIM * MAX_DIM for d in shape):
            raise SpecError(f"buffer {param.name} has shape {tuple(shape)}")
        if str(ty.dtype) not in TIR_DTYPES:
            raise SpecError(f"buffer {param.name} is {ty.dtype}; supported: {', '.join(TIR_DTYPES)}")
        buffers.append(TirBuffer(str(param.name), tuple(shape), str(ty.dtype)))
    written = _written_params(mod, func)
    outputs = tuple(b for i, b in enumerate(buffers) if i in written)
    inputs = tuple(b for i, b in enumerate(buffers) if i not in written)
    if not outputs:
        raise SpecError("the PrimFunc writes none of its parameters: it has no output")
    if buffers[len(inputs) :] != list(outputs):
        raise SpecError("the outputs (the parameters the PrimFunc writes) must be its last parameters")
    nbytes = sum(math.prod(b.shape) * np.dtype(b.dtype).itemsize for b in buffers)
    if nbytes > MAX_BYTES:
        raise SpecError(f"tensors take {nbytes / 2**20:.0f} MiB; the limit is {MAX_BYTES >> 20} MiB")
    try:
        work = float(s_tir.analysis.estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001 - an estimate only; count one operation per output element
        work = float(sum(math.prod(b.shape) for b in outputs))
    work = max(work, float(sum(math.prod(b.shape) for b in outputs)))
    if work > MAX_FLOPS:
        raise SpecError(f"{work / 1e9:.1f} GFLOP per call is too much to measure; the limit is {MAX_FLOPS / 1e9:.0f}")
    return TirInfo(mod, inputs, outputs, work, outputs[0].dtype)


def _written_params(mod, func) -> set[int]:
    """Indices of the parameters some block writes: the outputs."""
    from tvm import s_tir

    try:
        sch = s_tir.Schedule(mod)
        todo = list(sch.get_child_blocks(sch.get_sblock("root")))
    except Exception as exc:  # noqa: BLE001
        raise SpecError(f"the PrimFunc is not schedulable: {str(exc).splitlines()[0][:200]}") from None
    written: set[int] = set()
    while todo:
        block_rv = todo.pop()
        block = sch.get(block_rv)
        for region in block.writes:
            for i, param in enumerate(func.params):
                if region.source.same_as(param):
                    written.add(i)
        todo.extend(sch.get_child_blocks(block_rv))
    return written


# --- the library: the papers' layers, scaled for a 2-core CPU, plus references -------------

LIBRARY: dict[str, KernelSpec] = {
    s.name: validate(s)
    for s in [
        KernelSpec("gemm", {"M": 512, "N": 512, "K": 512}, name="gemm-512"),
        KernelSpec("gemm", {"M": 128, "N": 128, "K": 128}, name="gemm-128"),
        # Llama-3-8B: 32 heads, head dim 128; sequence scaled to 128.
        KernelSpec("attention", {"B": 32, "S": 128, "D": 128}, name="llama3-8b-attention"),
        KernelSpec("batch_matmul_nt", {"B": 32, "M": 128, "N": 128, "K": 128}, name="llama3-8b-attn-qk"),
        KernelSpec("batch_matmul", {"B": 32, "M": 128, "N": 128, "K": 128}, name="llama3-8b-attn-sv"),
        # DeepSeek-R1 MoE expert: (1,16,7168) x (7168,2048); N scaled to 512.
        KernelSpec("gemm", {"M": 16, "N": 512, "K": 7168}, name="deepseek-r1-moe"),
        # FLUX.1 joint attention: 24 heads of dim 128 over 4608 tokens; scaled to 8 x 256.
        KernelSpec("attention", {"B": 8, "S": 256, "D": 128}, name="flux-attention"),
        # FLUX VAE 3x3 conv; scaled to 64 channels at 56x56.
        KernelSpec("conv2d", {"N": 1, "C": 64, "H": 56, "W": 56, "K": 64, "R": 3}, name="flux-conv2d"),
        # Llama-4-Scout MLP (hidden 5120, expert 8192): gate, up, down; scaled to 32 tokens, 1024 -> 512.
        KernelSpec("gated_mlp", {"M": 32, "H": 1024, "I": 512}, name="llama4-scout-mlp"),
        KernelSpec("layer_norm", {"M": 128, "N": 4096}, name="layer-norm"),
        KernelSpec("softmax", {"M": 256, "N": 1024}, name="softmax"),
    ]
}

#: The five layers of the papers, in the order the benchmark tables use.
PAPER_LAYERS = (
    "llama3-8b-attention",
    "deepseek-r1-moe",
    "flux-attention",
    "flux-conv2d",
    "llama4-scout-mlp",
)


def get_kernel(name: str) -> KernelSpec:
    try:
        return LIBRARY[name]
    except KeyError:
        raise SpecError(f"unknown kernel {name!r}; known: {', '.join(LIBRARY)}") from None
