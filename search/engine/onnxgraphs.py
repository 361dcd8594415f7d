"""ONNX graphs built with ``onnx.helper`` for benchmarks, tests and demos: a transformer
encoder block (self-attention + MLP, BERT-base sizes by default) and a small CNN.

The ``onnx`` wheel ships real CNNs (``onnx/backend/test/data/light/``) but no attention; this
block is the transformer a compiler team tunes. Weights are seeded random numbers, stored as
initializers; every shape is fixed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _init(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(array.astype(np.float32), name)


def transformer_block(*, seq: int = 128, hidden: int = 768, heads: int = 12, ffn: int = 3072, seed: int = 0) -> bytes:
    """One BERT encoder layer: LayerNorm(x + Attention(x)) then LayerNorm(h + MLP(h)), with
    the attention as MatMul / Reshape / Transpose / MatMul / Softmax / MatMul (as exported
    from PyTorch at opset 17). Input ``x``: (1, seq, hidden); output ``y``: the same."""
    from onnx import TensorProto, helper

    if hidden % heads:
        raise ValueError("hidden must be a multiple of heads")
    rng = np.random.default_rng(seed)
    head = hidden // heads
    scale = 1.0 / np.sqrt(hidden)
    inits = [
        _init("Wq", rng.normal(0, scale, (hidden, hidden))),
        _init("Wk", rng.normal(0, scale, (hidden, hidden))),
        _init("Wv", rng.normal(0, scale, (hidden, hidden))),
        _init("Wo", rng.normal(0, scale, (hidden, hidden))),
        _init("bq", rng.normal(0, 0.02, (hidden,))),
        _init("bk", rng.normal(0, 0.02, (hidden,))),
        _init("bv", rng.normal(0, 0.02, (hidden,))),
        _init("bo", rng.normal(0, 0.02, (hidden,))),
        _init("W1", rng.normal(0, scale, (hidden, ffn))),
        _init("b1", rng.normal(0, 0.02, (ffn,))),
        _init("W2", rng.normal(0, 1.0 / np.sqrt(ffn), (ffn, hidden))),
        _init("b2", rng.normal(0, 0.02, (hidden,))),
        _init("g1", np.ones(hidden)),
        _init("be1", np.zeros(hidden)),
        _init("g2", np.ones(hidden)),
        _init("be2", np.zeros(hidden)),
        _init("sqrt_d", np.array(np.sqrt(head))),
        _init("sqrt2", np.array(np.sqrt(2.0))),
        _init("one", np.array(1.0)),
        _init("half", np.array(0.5)),
        helper.make_tensor("heads_shape", TensorProto.INT64, [4], [1, seq, heads, head]),
        helper.make_tensor("merge_shape", TensorProto.INT64, [3], [1, seq, hidden]),
    ]
    n = helper.make_node
    nodes = []
    for p in ("q", "k", "v"):
        nodes += [
            n("MatMul", ["x", f"W{p}"], [f"{p}_mm"]),
            n("Add", [f"{p}_mm", f"b{p}"], [f"{p}_lin"]),
            n("Reshape", [f"{p}_lin", "heads_shape"], [f"{p}_heads"]),
        ]
    nodes += [
        n("Transpose", ["q_heads"], ["q_t"], perm=[0, 2, 1, 3]),  # (1, H, S, D)
        n("Transpose", ["k_heads"], ["k_t"], perm=[0, 2, 3, 1]),  # (1, H, D, S)
        n("Transpose", ["v_heads"], ["v_t"], perm=[0, 2, 1, 3]),
        n("MatMul", ["q_t", "k_t"], ["scores_raw"]),
        n("Div", ["scores_raw", "sqrt_d"], ["scores"]),
        n("Softmax", ["scores"], ["probs"], axis=-1),
        n("MatMul", ["probs", "v_t"], ["ctx_t"]),
        n("Transpose", ["ctx_t"], ["ctx_h"], perm=[0, 2, 1, 3]),
        n("Reshape", ["ctx_h", "merge_shape"], ["ctx"]),
        n("MatMul", ["ctx", "Wo"], ["o_mm"]),
        n("Add", ["o_mm", "bo"], ["attn"]),
        n("Add", ["x", "attn"], ["res1"]),
        n("LayerNormalization", ["res1", "g1", "be1"], ["h"], axis=-1, epsilon=1e-12),
        n("MatMul", ["h", "W1"], ["f1_mm"]),
        n("Add", ["f1_mm", "b1"], ["f1"]),
        # GELU as PyTorch exports it at opset 17: x * 0.5 * (1 + erf(x / sqrt(2)))
        n("Div", ["f1", "sqrt2"], ["f1_s"]),
        n("Erf", ["f1_s"], ["f1_erf"]),
        n("Add", ["f1_erf", "one"], ["f1_e1"]),
        n("Mul", ["f1", "f1_e1"], ["f1_m"]),
        n("Mul", ["f1_m", "half"], ["f1_act"]),
        n("MatMul", ["f1_act", "W2"], ["f2_mm"]),
        n("Add", ["f2_mm", "b2"], ["f2"]),
        n("Add", ["h", "f2"], ["res2"]),
        n("LayerNormalization", ["res2", "g2", "be2"], ["y"], axis=-1, epsilon=1e-12),
    ]
    graph = helper.make_graph(
        nodes,
        "encoder_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="colt")
    model.ir_version = 8
    return model.SerializeToString()


def small_cnn(*, size: int = 16, channels: int = 8, classes: int = 10, seed: int = 0) -> bytes:
    """Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax: a model
    with a few tasks that tunes in seconds (for tests)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    inits = [
        _init("w1", rng.normal(0, 0.3, (channels, 3, 3, 3))),
        _init("b1", rng.normal(0, 0.1, (channels,))),
        _init("w2", rng.normal(0, 0.2, (channels, channels, 3, 3))),
        _init("b2", rng.normal(0, 0.1, (channels,))),
        _init("fc", rng.normal(0, 0.3, (classes, channels))),
        _init("fcb", rng.normal(0, 0.1, (classes,))),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"]),
        n("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r2"]),
        n("GlobalAveragePool", ["r2"], ["p"]),
        n("Flatten", ["p"], ["f"]),
        n("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
        n("Softmax", ["logits"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="colt")
    model.ir_version = 8
    return model.SerializeToString()


def light_model(name: str) -> Path:
    """A real model graph the ``onnx`` wheel ships (``light_resnet50``, ``light_shufflenet``...)."""
    import onnx

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"{name}.onnx"
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def attention(*, batch: int, seq: int, dim: int) -> bytes:
    """Scaled dot-product attention as three stages, the way a framework exports it:
    MatMul(Q, K^T) / sqrt(D) -> Softmax -> MatMul(., V). Inputs Q, K, V: (batch, seq, dim).
    The library's fused ``attention`` kernel is one PrimFunc; imported from this graph the same
    computation is three tasks (batched matmuls and a softmax), each searched on its own."""
    from onnx import TensorProto, helper

    n = helper.make_node
    shape = [batch, seq, dim]
    nodes = [
        n("Transpose", ["K"], ["Kt"], perm=[0, 2, 1]),
        n("MatMul", ["Q", "Kt"], ["scores_raw"]),
        n("Div", ["scores_raw", "sqrt_d"], ["scores"]),
        n("Softmax", ["scores"], ["probs"], axis=-1),
        n("MatMul", ["probs", "V"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("Q", "K", "V")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [_init("sqrt_d", np.array(np.sqrt(dim)))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="colt")
    model.ir_version = 8
    return model.SerializeToString()
