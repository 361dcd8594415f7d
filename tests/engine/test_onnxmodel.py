"""Whole models and brought kernels: real ONNX graphs (the onnx wheel's and ones built with
onnx.helper) imported with TVM's Relax frontend, real task extraction, real builds and
onnxruntime; TVM IRModules in JSON form as kernels."""

import base64
import json

import numpy as np
import onnx
import pytest

from search.engine import onnxgraphs
from search.engine import onnxmodel as om
from search.engine import workloads as W
from search.engine.compiler import SearchSpace, make_target
from search.engine.workloads import KernelSpec, SpecError, validate


@pytest.fixture(scope="module")
def target():
    return make_target("llvm", num_cores=1)


@pytest.fixture(scope="module")
def cnn():
    return onnxgraphs.small_cnn()


@pytest.fixture(scope="module")
def imported(cnn, target):
    return om.import_onnx(cnn, target, name="cnn")


def te_module(dtype="float32", out_dtype=None, n=8):
    import tvm
    from tvm import te

    a = te.placeholder((n, n), dtype, name="A")
    b = te.placeholder((n, n), dtype, name="B")
    k = te.reduce_axis((0, n), name="k")
    out_dtype = out_dtype or dtype
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k].astype(out_dtype) * b[k, j].astype(out_dtype), axis=k), name="C")
    return tvm.ir.save_json(tvm.IRModule({"main": te.create_prim_func([a, b, c])}))


# --- kernels brought as TVM IRModules --------------------------------------------------------


def test_a_brought_module_is_a_kernel_with_its_buffers_shapes_and_a_stable_key():
    text = te_module()
    spec = validate(KernelSpec("tir", {}, name="mm", module=text))
    assert spec.dtype == "float32" and spec.shape == {}
    assert W.input_shapes(spec) == [("A", (8, 8)), ("B", (8, 8))]
    assert W.output_buffers(spec) == [((8, 8), "float32")]
    assert W.flops(spec) == 2 * 8**3
    assert spec.key == validate(KernelSpec("tir", {}, name="other", module=text)).key
    assert spec.key != validate(KernelSpec("tir", {}, module=te_module(n=16))).key
    # the reference is the unscheduled module itself, which here is a matmul
    inputs = W.make_inputs(spec)
    (want,) = W.references(spec, inputs)
    np.testing.assert_allclose(want, inputs[0] @ inputs[1], rtol=1e-5)
    # round trip through the stored form
    assert KernelSpec.from_dict(spec.to_dict()) == spec


def test_a_database_workload_line_is_accepted_and_garbage_is_refused():
    text = te_module()
    line = json.dumps(["12345", base64.b64encode(text.encode()).decode()])
    assert validate(KernelSpec("tir", {}, module=line)).module == text
    cases = [
        ("", "empty"),
        ("{not json", "not JSON"),
        ('{"a": 1}', "TVM's JSON form"),
        (line + "\n" + line, "holds 2 workloads"),
        ('["1", "!!!"]', "not base64"),
        ('{"root_index": 1, "nodes": [{"type_key": "Nope"}]}', "TVM cannot load"),
    ]
    for module, message in cases:
        with pytest.raises(SpecError, match=message):
            validate(KernelSpec("tir", {}, module=module))
    with pytest.raises(SpecError, match="give no dimensions"):
        validate(KernelSpec("tir", {"M": 4}, module=text))
    with pytest.raises(SpecError, match="only with op"):
        validate(KernelSpec("gemm", {"M": 4, "N": 4, "K": 4}, module=text))


def test_a_module_with_dynamic_shapes_is_refused_with_the_buffer_named():
    import tvm
    from tvm import te

    n = te.var("n")
    a = te.placeholder((n, 4), "float32", name="A")
    b = te.compute((n, 4), lambda i, j: a[i, j] * 2.0, name="B")
    text = tvm.ir.save_json(tvm.IRModule({"main": te.create_prim_func([a, b])}))
    with pytest.raises(SpecError, match="buffer A has a dynamic dimension"):
        validate(KernelSpec("tir", {}, module=text))


def test_a_module_that_calls_out_of_the_kernel_is_refused_before_tvm_loads_it():
    import tvm
    from tvm import te

    # call_extern links any C symbol (system() included) into the built kernel
    a = te.placeholder((4,), "float32", name="A")
    b = te.compute((4,), lambda i: tvm.tirx.call_extern("float32", "system", a[i]), name="B")
    text = tvm.ir.save_json(tvm.IRModule({"main": te.create_prim_func([a, b])}))
    with pytest.raises(SpecError, match="string immediate|calls 'tirx.call_extern'"):
        validate(KernelSpec("tir", {}, module=text))
    # the same check without the string: an operator outside TIR's math is named and refused
    nodes = json.loads(te_module())
    nodes["nodes"].append({"type": "ir.Op", "data": "tirx.call_packed"})
    with pytest.raises(SpecError, match="calls 'tirx.call_packed'"):
        validate(KernelSpec("tir", {}, module=json.dumps(nodes)))
    # math operators pass (the library's attention layer uses exp and max)
    spec = validate(KernelSpec("tir", {}, module=_softmax_module()))
    assert spec.op == "tir"


def _softmax_module():
    import tvm
    from tvm import te, topi

    a = te.placeholder((4, 8), "float32", name="A")
    b = topi.nn.softmax(a)
    return tvm.ir.save_json(tvm.IRModule({"main": te.create_prim_func([a, b])}))


@pytest.mark.parametrize("dtype, out_dtype", [("float16", "float16"), ("int8", "int32")])
def test_float16_and_int8_kernels_are_checked_at_tolerances_that_fit(dtype, out_dtype):
    from search.engine.measure import LocalMeasurer, MeasureConfig

    spec = validate(KernelSpec("tir", {}, module=te_module(dtype, out_dtype, n=16)))
    assert spec.dtype == out_dtype
    inputs = W.make_inputs(spec)
    assert all(a.dtype == np.dtype(dtype) for a in inputs)
    (want,) = W.references(spec, inputs)
    exact = inputs[0].astype(np.float64) @ inputs[1].astype(np.float64)
    assert W.check_output(spec, want, exact.astype(out_dtype))[0]
    bad = want.copy()
    bad.flat[0] += 1 if dtype == "int8" else 0.5
    assert not W.check_output(spec, bad, want)[0]  # integers exactly; fp16 within 2e-2
    space = SearchSpace(spec, "llvm", seed=0)
    candidate = space.sample(np.random.default_rng(1))
    measurer = LocalMeasurer(spec, "llvm")
    try:
        result = measurer.measure([candidate.trace_json()], MeasureConfig(number=1, repeat=1, min_repeat_ms=0))[0]
    finally:
        measurer.close()
    assert result.ok, result.error


# --- ONNX models --------------------------------------------------------------------------------


def test_import_a_model_yields_its_fused_tasks_with_weights_and_flops(imported):
    names = [t.name for t in imported.tasks]
    assert any("conv2d" in n for n in names) and "softmax" in names
    assert imported.inputs == [om.TensorInfo("x", (1, 3, 16, 16), "float32")]
    assert imported.operators["Conv"] == 2
    conv = max(imported.tasks, key=lambda t: t.flops)
    assert conv.flops >= 2 * 8 * 8 * 9 * 16 * 16  # the 8 -> 8 channel 3x3 conv
    for task in imported.tasks:
        assert task.spec.op == "tir" and task.weight >= 1
        assert validate(task.spec) == task.spec


def test_the_real_shufflenet_graph_imports(target):
    data = onnxgraphs.light_model("light_shufflenet").read_bytes()
    model = om.import_onnx(data, target, name="shufflenet")
    assert len(model.tasks) > 10
    assert sum(t.weight for t in model.tasks) > len(model.tasks)  # repeated blocks share tasks


def test_allocation_follows_the_share_of_untuned_latency():
    def task(name, weight, baseline):
        return om.Task(name, weight, KernelSpec("gemm", {"M": 1, "N": 1, "K": 1}), 1.0, baseline)

    tasks = [task("big", 2, 0.040), task("mid", 1, 0.015), task("small", 1, 0.004), task("tiny", 10, 1e-6)]
    trials = om.allocate(tasks, 40)
    assert sum(trials) == 40
    assert trials[0] > trials[1] > trials[2] >= om.MIN_TASK_TRIALS
    assert trials[3] == 0  # 0.01% of the latency: no trials of its own
    # a budget too small for every task's minimum goes to the largest shares first
    assert om.allocate(tasks, 6) == [6, 0, 0, 0]
    assert sum(om.allocate(tasks, 9)) == 9
    assert om.estimated_latency(tasks, [0.010, None, None, None]) == pytest.approx(2 * 0.010 + 0.015 + 0.004 + 10e-6)


def test_the_database_of_best_traces_is_what_the_model_build_applies(imported, cnn, target):
    conv = max(imported.tasks, key=lambda t: t.flops)
    space = SearchSpace(conv.spec, "llvm", seed=1)
    candidate = space.sample(np.random.default_rng(1))
    db = om.build_database(target, [(conv.spec, candidate.trace_json(), 1e-3)])
    # the build looks tasks up by the module compile_relax's own lowering yields: it finds this one
    from tvm.s_tir import meta_schedule as ms

    lowered = ms.relax_integration.extract_tasks(om.lower(imported.mod, target), target)
    found = [t.task_name for t in lowered if db.query_tuning_record(t.dispatched[0], target, t.task_name)]
    assert found == [conv.name]
    arrays = om.make_model_inputs(imported.inputs)
    tuned = om.compile_model(imported.mod, target, db)
    _, _, _, outputs = om.measure_model(tuned, arrays, repeat=1)
    _, _, _, reference = om.run_onnxruntime(cnn, imported.inputs, arrays, repeat=1)
    assert om.max_abs_difference(outputs, reference) < 1e-4


# --- bad models -------------------------------------------------------------------------------


def graph_with(nodes, inputs, outputs, opset=17):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def test_bad_models_get_one_clear_message(cnn, target, monkeypatch):
    from onnx import TensorProto, helper

    vi = helper.make_tensor_value_info
    dynamic = graph_with(
        [helper.make_node("Relu", ["x"], ["y"])],
        [vi("x", TensorProto.FLOAT, ["batch", 4])],
        [vi("y", TensorProto.FLOAT, ["batch", 4])],
    )
    unsupported = graph_with(
        [helper.make_node("StringNormalizer", ["s"], ["t"])],
        [vi("s", TensorProto.STRING, [3])],
        [vi("t", TensorProto.STRING, [3])],
    )
    broken = graph_with(
        [helper.make_node("Relu", ["nowhere"], ["y"])],
        [vi("x", TensorProto.FLOAT, [4])],
        [vi("y", TensorProto.FLOAT, [4])],
    )
    no_tasks = graph_with(
        [helper.make_node("Identity", ["x"], ["y"])],
        [vi("x", TensorProto.FLOAT, [4])],
        [vi("y", TensorProto.FLOAT, [4])],
    )
    cases = [
        (b"", "empty"),
        (b"\x00\xff garbage \x12" * 50, "not an ONNX model"),
        (cnn[: len(cnn) // 2], "not an ONNX model"),
        (dynamic, "input 'x' has a dynamic dimension 'batch' \\(axis 0\\)"),
        (unsupported, "does not convert: StringNormalizer"),
        (broken, "ONNX checker refuses"),
        (no_tasks, "no tuning tasks"),
    ]
    for data, message in cases:
        with pytest.raises(om.ModelError, match=message):
            om.import_onnx(data, target)
    # a fixed shape for the dynamic input makes it importable
    assert om.import_onnx(dynamic, target, input_shapes={"x": [2, 4]}).inputs[0].shape == (2, 4)
    with pytest.raises(om.ModelError, match="has no input 'z'"):
        om.import_onnx(dynamic, target, input_shapes={"z": [2, 4]})
    # a tensor whose bytes live "in another file" would make the importer read a server path
    from onnx import external_data_helper, numpy_helper

    model = onnx.load_from_string(cnn)
    weight = model.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight), weight.name))
    external_data_helper.set_external_data(weight, location="../../etc/passwd")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    with pytest.raises(om.ModelError, match="tensors in external files"):
        om.import_onnx(model.SerializeToString(), target)
    monkeypatch.setattr(om, "MAX_MODEL_BYTES", 1000)
    with pytest.raises(om.ModelError, match="the limit is"):
        om.import_onnx(cnn, target)


def test_the_transformer_block_has_attention_and_mlp_tasks_and_matches_onnxruntime(target):
    data = onnxgraphs.transformer_block(seq=8, hidden=32, heads=4, ffn=64)
    model = om.import_onnx(data, target, name="block")
    names = " ".join(t.name for t in model.tasks)
    assert "softmax" in names and "layer_norm" in names and "erf" in names
    assert any(t.weight == 3 for t in model.tasks)  # Q, K and V projections share one kernel
    arrays = om.make_model_inputs(model.inputs)
    _, _, _, outputs = om.measure_model(om.compile_model(model.mod, target), arrays, repeat=1)
    _, _, _, reference = om.run_onnxruntime(data, model.inputs, arrays, repeat=1)
    assert om.max_abs_difference(outputs, reference) < 1e-4


def test_the_split_attention_graph_computes_the_library_attention(target):
    """The three-stage graph (the benchmark's split design space) and the fused kernel agree."""
    shape = {"B": 2, "S": 8, "D": 4}
    model = om.import_onnx(onnxgraphs.attention(batch=2, seq=8, dim=4), target, name="attn")
    names = [t.name for t in model.tasks]
    assert "softmax" in names and sum("matmul" in n for n in names) == 2
    arrays = om.make_model_inputs(model.inputs)
    _, _, _, (out,) = om.measure_model(om.compile_model(model.mod, target), arrays, repeat=1)
    want = W.reference(validate(KernelSpec("attention", shape)), arrays)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
