import numpy as np
import pytest

from search.engine import workloads as W
from search.engine.workloads import KernelSpec, SpecError, validate

SMALL = {
    "gemm": {"M": 8, "N": 12, "K": 16},
    "batch_matmul_nt": {"B": 2, "M": 8, "N": 4, "K": 16},
    "batch_matmul": {"B": 2, "M": 8, "N": 4, "K": 16},
    "attention": {"B": 2, "S": 8, "D": 4},
    "conv2d": {"N": 1, "C": 3, "H": 6, "W": 5, "K": 4, "R": 3},
    "gated_mlp": {"M": 4, "H": 8, "I": 6},
    "layer_norm": {"M": 4, "N": 16},
    "softmax": {"M": 4, "N": 16},
}


def test_every_operator_has_a_small_case():
    assert set(SMALL) == set(W.OPERATORS)


@pytest.mark.parametrize("op", sorted(SMALL))
def test_unscheduled_kernel_matches_numpy_reference(op):
    """Each operator's TE definition, built and run by TVM, agrees with its numpy reference."""
    from search.engine.tvmenv import tvm as _tvm

    tvm = _tvm()
    spec = validate(KernelSpec(op, SMALL[op]))
    lib = tvm.compile(W.build_module(spec), target="llvm")
    dev = tvm.cpu()
    inputs = W.make_inputs(spec, seed=3)
    out = tvm.runtime.tensor(np.zeros(W.output_shape(spec), "float32"), dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in inputs], out)
    ok, err = W.check_output(spec, out.numpy(), W.reference(spec, inputs))
    assert ok, err
    # and the check is not vacuous: a perturbed output fails it
    bad = out.numpy().copy()
    bad.flat[0] += 1.0
    assert not W.check_output(spec, bad, W.reference(spec, inputs))[0]


def test_flops_of_gemm_and_conv():
    assert W.flops(W.get_kernel("gemm-512")) == 2 * 512**3
    conv = W.get_kernel("flux-conv2d")
    assert W.output_shape(conv) == (1, 64, 56, 56)
    assert W.flops(conv) == 2 * 64 * 56 * 56 * 64 * 9


def test_library_has_the_five_paper_layers_and_references():
    for name in W.PAPER_LAYERS + ("gemm-512", "layer-norm", "softmax"):
        spec = W.get_kernel(name)
        assert W.flops(spec) > 0


@pytest.mark.parametrize(
    "spec, message",
    [
        (KernelSpec("matmul", {"M": 1}), "unknown operator"),
        (KernelSpec("gemm", {"M": 4, "N": 4}), "needs dimension K"),
        (KernelSpec("gemm", {"M": 0, "N": 4, "K": 4}), "must be positive"),
        (KernelSpec("gemm", {"M": -3, "N": 4, "K": 4}), "must be positive"),
        (KernelSpec("gemm", {"M": 4, "N": 4, "K": 4, "Q": 2}), "has no dimension Q"),
        (KernelSpec("gemm", {"M": 4.5, "N": 4, "K": 4}), "must be an integer"),
        (KernelSpec("gemm", {"M": "__import__('os')", "N": 4, "K": 4}), "must be an integer"),
        (KernelSpec("gemm", {"M": 1 << 20, "N": 4, "K": 4}), "larger than"),
        (KernelSpec("gemm", {"M": 65536, "N": 65536, "K": 8}), "MiB"),
        (KernelSpec("gemm", {"M": 4096, "N": 4096, "K": 4096}, dtype="bfloat16"), "not supported"),
        (KernelSpec("gemm", {"M": 4096, "N": 4096, "K": 4096}), "too much"),
        (KernelSpec("conv2d", {"N": 1, "C": 3, "H": 2, "W": 2, "K": 4, "R": 7}), "window"),
    ],
)
def test_bad_specs_are_rejected_with_a_clear_message(spec, message):
    with pytest.raises(SpecError, match=message):
        validate(spec)


def test_spec_round_trips_through_a_dict():
    spec = W.get_kernel("flux-conv2d")
    again = KernelSpec.from_dict(spec.to_dict())
    assert again == spec
    assert KernelSpec.from_dict({"op": "gemm", "shape": {"M": "8", "N": 8, "K": 8}}).shape["M"] == 8
    with pytest.raises(SpecError):
        KernelSpec.from_dict({"op": "gemm", "shape": "M=8"})


def test_parse_shape_for_the_cli_and_the_form():
    assert W.parse_shape(" M=8, N = 16 ,K=4,") == {"M": "8", "N": "16", "K": "4"}
    with pytest.raises(SpecError, match="NAME=INT"):
        W.parse_shape("M8")
    with pytest.raises(SpecError, match="give the dimensions"):
        W.parse_shape(" , ")


@pytest.mark.parametrize("op", W.LOW_PRECISION)
@pytest.mark.parametrize("dtype, out_dtype", [("float16", "float16"), ("int8", "int32")])
def test_low_precision_kernels_match_their_reference_at_the_dtypes_tolerance(op, dtype, out_dtype):
    """float16 accumulates in float16 (2e-2 relative), int8 in int32 (exactly)."""
    from search.engine.tvmenv import tvm as _tvm

    tvm = _tvm()
    spec = validate(KernelSpec(op, SMALL[op], dtype=dtype))
    ((shape, odt),) = W.output_buffers(spec)
    assert odt == out_dtype
    inputs = W.make_inputs(spec, seed=5)
    assert all(a.dtype == np.dtype(dtype) for a in inputs)
    lib = tvm.compile(W.build_module(spec), target="llvm")
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(shape, odt), dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in inputs], out)
    want = W.reference(spec, inputs)
    ok, err = W.check_output(spec, out.numpy(), want)
    assert ok, err
    bad = out.numpy().copy()
    bad.flat[0] += 1 if dtype == "int8" else 0.5
    assert not W.check_output(spec, bad, want)[0]


def test_low_precision_is_offered_only_where_it_is_built():
    with pytest.raises(SpecError, match="softmax is float32 only"):
        validate(KernelSpec("softmax", SMALL["softmax"], dtype="int8"))
    with pytest.raises(SpecError, match="not supported"):
        validate(KernelSpec("gemm", SMALL["gemm"], dtype="bfloat16"))


def _blocks_of(sch) -> dict[str, str]:
    """Each block's name -> the TVMScript of its body, in a scheduled module."""
    import re

    text = sch.mod.script()
    parts = re.split(r'with T\.sblock\("(\w+)"\):', text)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_mlp_schedules_never_recompute_silu_inside_the_down_projection():
    """silu is a stage of its own in every schedule the search can realize: inlined into the
    down projection it evaluated a sigmoid for every multiply-add of the reduction. AutoInline
    honours the stage's annotation; a schedule whose sampled compute location inlined it anyway
    is rejected by the kernel's extra post-processor."""
    from search.engine.compiler import SearchSpace, kept_stages

    space = SearchSpace(validate(KernelSpec("gated_mlp", SMALL["gated_mlp"])), "llvm")
    assert kept_stages(space.mod) == ("silu",)
    rng = np.random.default_rng(0)
    for _ in range(12):
        blocks = _blocks_of(space.sample(rng).sch)
        assert "sigmoid" in blocks["silu"]
        assert not any("sigmoid" in body for name, body in blocks.items() if name.startswith("down"))
    inlined = [s for s in space.sketches if "silu" not in _blocks_of(s)]
    assert inlined, "MetaSchedule's compute-location sampling no longer inlines silu: the check is moot"
    for sketch in inlined:  # replayed with its own decisions, the inlined schedule does not realize
        assert space.realize(sketch.trace.simplified(remove_postproc=True), rng) is None
    kept = [s for s in space.sketches if "silu" in _blocks_of(s)]
    assert space.realize(kept[0].trace.simplified(remove_postproc=True), rng) is not None


def test_attention_reads_transposed_keys_and_scales_once_per_score():
    """K is a stage of its own, transposed (the schedule may place it, never inline it), the
    1/sqrt(D) scale is applied once per score before the exponential, not in Q K^T's
    multiply-adds, and the exponential is the vectorizable polynomial, kept as a stage."""
    from search.engine.compiler import SearchSpace, kept_stages

    spec = validate(KernelSpec("attention", SMALL["attention"]))
    mod = W.build_module(spec)
    blocks = _blocks_of(type("Unscheduled", (), {"mod": mod}))
    assert kept_stages(mod) == ("K_T", "T_fast_exp")
    assert "K[" in blocks["K_T"] and "K_T[" in blocks["QK"]
    assert "0.5" not in blocks["QK"] and "0.5" in blocks["P_shifted"]  # D=4: scale 1/2
    assert "T.exp(" not in mod.script()  # a libm call per element, unvectorized
    space = SearchSpace(spec, "llvm")
    rng = np.random.default_rng(1)
    for _ in range(8):
        realized = _blocks_of(space.sample(rng).sch)
        assert "K_T" in realized and "T_fast_exp" in realized


def test_attention_divides_by_the_row_sums_after_the_second_matmul():
    """The softmax's normalization is deferred: the second matmul multiplies the exponentials by
    V with no division among its multiply-adds, in every schedule the search realizes, and the
    output divides each row by its sum once per element (S x D divisions, not S x S)."""
    from search.engine.compiler import SearchSpace

    spec = validate(KernelSpec("attention", SMALL["attention"]))
    blocks = _blocks_of(type("Unscheduled", (), {"mod": W.build_module(spec)}))
    assert "P_softmax" not in blocks
    assert "T_fast_exp[" in blocks["PV"] and "V[" in blocks["PV"] and " / " not in blocks["PV"]
    assert "PV[" in blocks["O"] and "P_sum[" in blocks["O"] and " / " in blocks["O"]
    space = SearchSpace(spec, "llvm")
    rng = np.random.default_rng(2)
    for _ in range(8):
        realized = _blocks_of(space.sample(rng).sch)
        assert not any(" / " in body for name, body in realized.items() if name.startswith("PV"))
