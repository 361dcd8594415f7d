"""The library's layers as they were written before, for the design-space ablation.

``-fused``: until 2026-12-05 the Llama-4-Scout MLP let MetaSchedule inline silu into the down projection (a
sigmoid for every multiply-add), and attention read K untransposed in Q K^T with the 1/sqrt(D)
scale inside its reduction and a libm ``exp``. ``bench_kernel("llama4-scout-mlp-fused")`` (or
``"llama3-8b-attention-fused"``, ``"flux-attention-fused"``) is that formulation of the layer,
brought as a TVM IRModule (the way a user uploads one), so the measurement workers rebuild it
from the spec alone and its reference is the unscheduled module itself. Any other name is the
library's kernel. Rows measured before the change carry the ``-fused`` names too.

``-staged``: from 2026-12-05 until 2026-12-07 attention was written in stages (K transposed,
the scale once per score, the vectorizable exponential kept) but normalized its softmax before
the second matmul, so MetaSchedule inlined the division into that matmul's multiply-adds; the
library now divides each output row by its sum after the matmul. ``"flux-attention-staged"``
and ``"llama3-8b-attention-staged"`` are that formulation, with its kept stages; rows measured
before the change carry these names.

The TE below is a frozen copy of the old definitions, not shared with ``workloads``: a later
change to the library's kernels must not change what these rows measure.
"""

from __future__ import annotations

import math

from search.engine.workloads import KEEP_STAGE, TIR_OP, KernelSpec, get_kernel, validate


def _te_gated_mlp_fused(s, dtype):
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
    act = te.compute((m, inter), lambda i, j: g[i, j] * tirx.sigmoid(g[i, j]) * u[i, j], name="act")
    out = te.compute((m, hdim), lambda i, j: te.sum(act[i, k2] * w2[k2, j], axis=k2), name="down")
    return [x, w1, w3, w2, out]


def _te_attention_fused(s, dtype):
    from tvm import te, tirx

    b, n, d = s["B"], s["S"], s["D"]
    q = te.placeholder((b, n, d), dtype, name="Q")
    k = te.placeholder((b, n, d), dtype, name="K")
    v = te.placeholder((b, n, d), dtype, name="V")
    rk = te.reduce_axis((0, d), name="rk")
    r1 = te.reduce_axis((0, n), name="r1")
    r2 = te.reduce_axis((0, n), name="r2")
    rv = te.reduce_axis((0, n), name="rv")
    scale = tirx.const(1.0 / math.sqrt(d), dtype)
    scores = te.compute((b, n, n), lambda h, i, j: te.sum(q[h, i, rk] * scale * k[h, j, rk], axis=rk), name="QK")
    mx = te.compute((b, n), lambda h, i: te.max(scores[h, i, r1], axis=r1), name="P_max")
    ex = te.compute((b, n, n), lambda h, i, j: tirx.exp(scores[h, i, j] - mx[h, i]), name="P_exp")
    sm = te.compute((b, n), lambda h, i: te.sum(ex[h, i, r2], axis=r2), name="P_sum")
    p = te.compute((b, n, n), lambda h, i, j: ex[h, i, j] / sm[h, i], name="P_softmax")
    out = te.compute((b, n, d), lambda h, i, j: te.sum(p[h, i, rv] * v[h, rv, j], axis=rv), name="O")
    return [q, k, v, out]


def _te_softmax_rows_staged(x, shape, scale):
    from tvm import te, topi

    last = shape[-1]
    r1 = te.reduce_axis((0, last), name="r1")
    r2 = te.reduce_axis((0, last), name="r2")
    lead = shape[:-1]
    mx = te.compute(lead, lambda *i: te.max(x[i + (r1,)], axis=r1), name="P_max")
    ex = topi.fast_exp(te.compute(shape, lambda *i: (x[i] - mx[i[:-1]]) * scale, name="P_shifted"))
    sm = te.compute(lead, lambda *i: te.sum(ex[i + (r2,)], axis=r2), name="P_sum")
    return te.compute(shape, lambda *i: ex[i] / sm[i[:-1]], name="P_softmax")


def _te_attention_staged(s, dtype):
    from tvm import te, tirx

    b, n, d = s["B"], s["S"], s["D"]
    q = te.placeholder((b, n, d), dtype, name="Q")
    k = te.placeholder((b, n, d), dtype, name="K")
    v = te.placeholder((b, n, d), dtype, name="V")
    kt = te.compute((b, d, n), lambda h, c, j: k[h, j, c], name="K_T")
    rk = te.reduce_axis((0, d), name="rk")
    scores = te.compute((b, n, n), lambda h, i, j: te.sum(q[h, i, rk] * kt[h, rk, j], axis=rk), name="QK")
    p = _te_softmax_rows_staged(scores, (b, n, n), tirx.const(1.0 / math.sqrt(d), dtype))
    rv = te.reduce_axis((0, n), name="rv")
    out = te.compute((b, n, d), lambda h, i, j: te.sum(p[h, i, rv] * v[h, rv, j], axis=rv), name="O")
    return [q, k, v, out]


#: suffix -> {operator: (the old formulation's TE, the stages it keeps)}
FORMS = {
    "-fused": {"gated_mlp": (_te_gated_mlp_fused, ()), "attention": (_te_attention_fused, ())},
    "-staged": {"attention": (_te_attention_staged, ("K_T", "T_fast_exp"))},
}


def base_layer(name: str) -> str:
    """The library's name of a layer, without an old formulation's suffix."""
    for suffix in FORMS:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def bench_kernel(name: str) -> KernelSpec:
    """The library's kernel ``name``, or with a suffix of :data:`FORMS` that old formulation of
    the layer as a brought IRModule."""
    suffix = next((x for x in FORMS if name.endswith(x)), None)
    if suffix is None:
        return get_kernel(name)
    import tvm
    from tvm import te
    from tvm.s_tir import Schedule

    base = get_kernel(name[: -len(suffix)])
    if base.op not in FORMS[suffix]:
        raise ValueError(f"{base.name} has no {suffix[1:]} formulation (only {', '.join(FORMS[suffix])} layers)")
    build, keep = FORMS[suffix][base.op]
    sch = Schedule(te.create_prim_func(build(base.shape, base.dtype)))
    ((key, value),) = KEEP_STAGE.items()
    for stage in keep:
        sch.annotate(sch.get_sblock(stage), key, value)
    text = tvm.ir.save_json(sch.mod)
    return validate(KernelSpec(op=TIR_OP, shape={}, dtype=base.dtype, name=name, module=text))
