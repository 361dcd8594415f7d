"""The old formulations of the library's layers that the design-space ablation measures."""

import numpy as np
import pytest

from bench import forms
from search.engine import workloads as W
from search.engine.compiler import SearchSpace, kept_stages
from search.engine.workloads import KernelSpec, validate

SMALL = {"attention": {"B": 2, "S": 8, "D": 4}, "gated_mlp": {"M": 4, "H": 8, "I": 6}}


@pytest.mark.parametrize("suffix", sorted(forms.FORMS))
def test_each_old_formulation_computes_the_layer(suffix):
    """Built and run by TVM on a small shape, every old formulation agrees with the library's
    numpy reference of its layer."""
    from search.engine.tvmenv import tvm as _tvm

    tvm = _tvm()
    from tvm import te

    for op, (build, _) in forms.FORMS[suffix].items():
        spec = validate(KernelSpec(op, SMALL[op]))
        lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func(build(spec.shape, spec.dtype))}), target="llvm")
        inputs = W.make_inputs(spec)
        dev = tvm.cpu()
        args = [tvm.runtime.tensor(x, dev) for x in inputs]
        out = tvm.runtime.tensor(np.zeros(W.output_shape(spec), dtype=spec.dtype), dev)
        lib["main"](*args, out)
        np.testing.assert_allclose(out.numpy(), W.reference(spec, inputs), rtol=1e-4, atol=1e-5)


def test_the_staged_attention_normalizes_before_the_second_matmul_and_keeps_its_stages():
    """``-staged`` is attention as the library wrote it until 2026-12-07: the division by the row
    sums is a stage before the second matmul (which MetaSchedule inlines into it), and K_T and the
    exponential stay stages, as they did then; the library's layer divides after the matmul."""
    staged = forms.bench_kernel("flux-attention-staged")
    assert staged.name == "flux-attention-staged" and forms.base_layer(staged.name) == "flux-attention"
    mod = W.build_module(staged)
    assert kept_stages(mod) == ("K_T", "T_fast_exp")
    text = mod.script()
    assert 'T.sblock("P_softmax")' in text and 'T.sblock("PV")' not in text
    assert 'T.sblock("PV")' in W.build_module(W.get_kernel("flux-attention")).script()
    assert forms.bench_kernel("flux-attention") == W.get_kernel("flux-attention")
    with pytest.raises(ValueError, match="no staged formulation"):
        forms.bench_kernel("flux-conv2d-staged")
    space = SearchSpace(staged, "llvm")
    assert space.tiled_stages == 2 and len(space.sketches) > 1
