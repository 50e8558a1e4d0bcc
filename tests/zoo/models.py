"""Deterministic generators of small hard-case ONNX models: the ways real models broke layerscope (issue 10).

Each generator is ``name(path) -> Path``: it writes one model built with ``onnx.helper`` from seeded numpy
weights (the same bytes on every call, no committed binaries) and returns the path. Its docstring says what
it exercises. Every model is valid for ``onnx.checker`` at the opset it declares and runs in ONNX Runtime at
FP32 (``test_models.py`` checks both). :data:`CASES` pairs each generator with the inputs a layerscope
config needs (shape, dtype and a value range that makes sense for the input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, INT64, INT32, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL
# IR version per opset as the exporters of the time wrote it (ORT accepts all of them).
_IR = {8: 3, 9: 4, 11: 6, 13: 7, 17: 8}


class _Graph:
    """Collects nodes and seeded initializers; names every node (exporters do) and writes the model."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def init(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def normal(self, name: str, shape: tuple[int, ...], std: float) -> str:
        return self.init(name, self.rng.normal(0.0, std, shape))

    def node(self, op: str, inputs: list[str], outputs: list[str] | str, name: str, **attrs: Any) -> str:
        outs = [outputs] if isinstance(outputs, str) else outputs
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def save(
        self, path: Path, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto], opset: int
    ) -> Path:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="layerscope-zoo")
        model.ir_version = _IR[opset]
        onnx.save(model, str(path))
        return path


def _vi(name: str, elem: int, shape: list[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _conv_bn_relu(g: _Graph, x: str, cin: int, cout: int, prefix: str, k: int = 3) -> str:
    """Conv (with bias) -> BatchNormalization -> Relu, named like a PyTorch export (/prefix/Conv ...)."""
    w = g.normal(f"{prefix}.weight", (cout, cin, k, k), (2.0 / (cin * k * k)) ** 0.5)
    b = g.normal(f"{prefix}.bias", (cout,), 0.1)
    pad = [k // 2] * 4
    y = g.node("Conv", [x, w, b], f"/{prefix}/Conv_output_0", f"/{prefix}/Conv", pads=pad, kernel_shape=[k, k])
    bn = [
        g.init(f"{prefix}.bn.weight", g.rng.uniform(0.5, 1.5, cout)),
        g.init(f"{prefix}.bn.bias", g.rng.normal(0.0, 0.1, cout)),
        g.init(f"{prefix}.bn.running_mean", g.rng.normal(0.0, 0.1, cout)),
        g.init(f"{prefix}.bn.running_var", g.rng.uniform(0.5, 2.0, cout)),
    ]
    y = g.node("BatchNormalization", [y, *bn], f"/{prefix}/bn/Output_0", f"/{prefix}/bn/BatchNormalization")
    return g.node("Relu", [y], f"/{prefix}/relu/Relu_output_0", f"/{prefix}/relu/Relu")


def _classifier(g: _Graph, x: str, channels: int, classes: int = 10) -> str:
    """GlobalAveragePool -> Flatten -> Gemm (transB) to ``logits``."""
    y = g.node("GlobalAveragePool", [x], "/head/pool/Output_0", "/head/pool/GlobalAveragePool")
    y = g.node("Flatten", [y], "/head/Flatten_output_0", "/head/Flatten", axis=1)
    w = g.normal("head.fc.weight", (classes, channels), channels**-0.5)
    b = g.normal("head.fc.bias", (classes,), 0.1)
    return g.node("Gemm", [y, w, b], "logits", "/head/fc/Gemm", transB=1)


def _small_cnn(path: Path, opset: int) -> Path:
    g = _Graph(seed=9)
    a = _conv_bn_relu(g, "image", 3, 8, "stem")
    p = g.node("MaxPool", [a], "/pool/MaxPool_output_0", "/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    b = _conv_bn_relu(g, p, 8, 16, "down")
    scales = g.init("up.scales", [1.0, 1.0, 2.0, 2.0])
    if opset < 10:  # Upsample-9 takes its scales as an input; it was deprecated by Resize at opset 10
        up = g.node("Upsample", [b, scales], "/up/Upsample_output_0", "/up/Upsample", mode="nearest")
    else:  # Resize-11: roi (unused by these modes) and scales; asymmetric + floor is what Upsample computed
        roi = g.init("up.roi", np.zeros(0, np.float32))
        up = g.node(
            "Resize",
            [b, roi, scales],
            "/up/Resize_output_0",
            "/up/Resize",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    cat = g.node("Concat", [a, up], "/cat/Concat_output_0", "/cat/Concat", axis=1)
    c = _conv_bn_relu(g, cat, 24, 8, "fuse", k=1)
    _classifier(g, c, 8)
    return g.save(
        path, f"small_cnn_opset{opset}", [_vi("image", FLOAT, [1, 3, 32, 32])], [_vi("logits", FLOAT, [1, 10])], opset
    )


def cnn_opset9(path: Path) -> Path:
    """A small CNN as exporters wrote it at opset 9 (IR 4): Conv/BatchNormalization/Relu/MaxPool, Upsample-9
    (scales as an input), Concat, GlobalAveragePool/Flatten/Gemm. Exercises lowering below opset 13: BF16 Casts
    (Cast to bfloat16 needs opset 13) and per-channel INT8 DequantizeLinear (``axis`` needs opset 13)."""
    return _small_cnn(path, 9)


def cnn_opset11(path: Path) -> Path:
    """The same CNN at opset 11 (IR 6), with Resize-11 instead of Upsample: still below opset 13."""
    return _small_cnn(path, 11)


def detection_scalars(path: Path) -> Path:
    """A detection-head-like graph whose per-sample intermediates include 0-d tensors: ReduceMax and ReduceSum
    with keepdims=0 over the whole score map, their ratio, and that scalar multiplied into the boxes. A dump
    of such a tensor has shape (samples,), so reading one sample gives a numpy scalar, not an array."""
    g = _Graph(seed=11)
    feat = "features"
    sw, sb = g.normal("score.weight", (1, 16, 1, 1), 0.25), g.init("score.bias", [0.0])
    bw, bb = g.normal("box.weight", (4, 16, 1, 1), 0.25), g.init("box.bias", [0.0, 0.0, 0.0, 0.0])
    s = g.node("Conv", [feat, sw, sb], "/score/Conv_output_0", "/score/Conv")
    s = g.node("Sigmoid", [s], "scores", "/score/Sigmoid")
    box = g.node("Conv", [feat, bw, bb], "/box/Conv_output_0", "/box/Conv")
    peak = g.node("ReduceMax", [s], "/post/max_score", "/post/ReduceMax", keepdims=0)
    total = g.node("ReduceSum", [s], "/post/score_sum", "/post/ReduceSum", keepdims=0)
    ratio = g.node("Div", [peak, total], "/post/peak_ratio", "/post/Div")
    gap = g.node("Sub", [s, peak], "/post/score_gap", "/post/Sub")
    e = g.node("Exp", [gap], "/post/Exp_output_0", "/post/Exp")
    norm = g.node("ReduceSum", [e], "/post/exp_sum", "/post/ReduceSum_1", keepdims=0)
    g.node("Div", [e, norm], "score_softmax", "/post/Div_1")
    g.node("Mul", [box, ratio], "boxes", "/post/Mul")
    return g.save(
        path,
        "detection_scalars",
        [_vi(feat, FLOAT, [1, 16, 10, 10])],
        [_vi("boxes", FLOAT, [1, 4, 10, 10]), _vi("score_softmax", FLOAT, [1, 1, 10, 10])],
        13,
    )


# Hidden activations of ~500: (x - mean)^2 reaches ~2.5e5, beyond FP16's 65504.
_HIDDEN, _TOKENS, _ACTIVATION_STD = 64, 16, 500.0


def _projection(g: _Graph, x: str, std_out: float, name: str, output: str) -> str:
    w = g.normal(f"{name}.weight", (_HIDDEN, _HIDDEN), std_out / _HIDDEN**0.5)
    return g.node("MatMul", [x, w], output, f"/{name}/MatMul")


def layernorm_primitive(path: Path) -> Path:
    """LayerNorm written out as primitive ops (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul, Add)
    between two MatMuls, as older transformer exports have it. The first projection gives activations with a
    standard deviation of ~500, so the squares (~2.5e5) overflow FP16: Pow, the variance and Sqrt become Inf
    in FP16 and the normalised values collapse to 0 (finite but wrong) downstream."""
    g = _Graph(seed=17)
    h = _projection(g, "hidden", _ACTIVATION_STD, "proj_in", "/proj_in/MatMul_output_0")
    mean = g.node("ReduceMean", [h], "/ln/ReduceMean_output_0", "/ln/ReduceMean", axes=[-1], keepdims=1)
    d = g.node("Sub", [h, mean], "/ln/Sub_output_0", "/ln/Sub")
    sq = g.node("Pow", [d, g.init("ln.two", 2.0)], "/ln/Pow_output_0", "/ln/Pow")
    var = g.node("ReduceMean", [sq], "/ln/ReduceMean_1_output_0", "/ln/ReduceMean_1", axes=[-1], keepdims=1)
    var = g.node("Add", [var, g.init("ln.eps", 1e-5)], "/ln/Add_output_0", "/ln/Add")
    std = g.node("Sqrt", [var], "/ln/Sqrt_output_0", "/ln/Sqrt")
    y = g.node("Div", [d, std], "/ln/Div_output_0", "/ln/Div")
    y = g.node("Mul", [y, g.init("ln.weight", g.rng.uniform(0.5, 1.5, _HIDDEN))], "/ln/Mul_output_0", "/ln/Mul")
    y = g.node("Add", [y, g.init("ln.bias", g.rng.normal(0, 0.1, _HIDDEN))], "/ln/Add_1_output_0", "/ln/Add_1")
    _projection(g, y, 1.0, "proj_out", "output")
    shape: list[int | str] = [1, _TOKENS, _HIDDEN]
    return g.save(path, "layernorm_primitive", [_vi("hidden", FLOAT, shape)], [_vi("output", FLOAT, shape)], 17)


def layernorm_op(path: Path) -> Path:
    """The same block with the LayerNormalization op (opset 17) instead of primitives: whether the runtime's
    FP16 kernel accumulates the variance in FP32 decides whether it overflows."""
    g = _Graph(seed=17)
    h = _projection(g, "hidden", _ACTIVATION_STD, "proj_in", "/proj_in/MatMul_output_0")
    gamma = g.init("ln.weight", g.rng.uniform(0.5, 1.5, _HIDDEN))
    beta = g.init("ln.bias", g.rng.normal(0, 0.1, _HIDDEN))
    y = g.node(
        "LayerNormalization", [h, gamma, beta], "/ln/LayerNormalization_output_0", "/ln/LayerNormalization", axis=-1
    )
    _projection(g, y, 1.0, "proj_out", "output")
    shape: list[int | str] = [1, _TOKENS, _HIDDEN]
    return g.save(path, "layernorm_op", [_vi("hidden", FLOAT, shape)], [_vi("output", FLOAT, shape)], 17)


def if_branches(path: Path) -> Path:
    """An ``If`` whose condition is a comparison on the input (sum(x) > 0); each branch has a few float ops on
    an outer-scope tensor. Tensors inside the branches are not observable from outside the subgraph."""
    g = _Graph(seed=21)
    x = g.node("Mul", ["x", g.init("pre.scale", 1.5)], "/pre/Mul_output_0", "/pre/Mul")
    total = g.node("ReduceSum", [x], "/cond/ReduceSum_output_0", "/cond/ReduceSum", keepdims=0)
    cond = g.node("Greater", [total, g.init("cond.zero", 0.0)], "/cond/Greater_output_0", "/cond/Greater")
    two, one, half = g.init("c.two", 2.0), g.init("c.one", 1.0), g.init("c.half", 0.5)
    then_branch = helper.make_graph(
        [
            helper.make_node("Mul", [x, two], ["then_mul"], name="/then/Mul"),
            helper.make_node("Add", ["then_mul", one], ["then_out"], name="/then/Add"),
        ],
        "then_branch",
        [],
        [_vi("then_out", FLOAT, [1, 8])],
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("Sub", [x, one], ["else_sub"], name="/else/Sub"),
            helper.make_node("Mul", ["else_sub", half], ["else_out"], name="/else/Mul"),
        ],
        "else_branch",
        [],
        [_vi("else_out", FLOAT, [1, 8])],
    )
    y = g.node("If", [cond], "/branch/If_output_0", "/branch/If", then_branch=then_branch, else_branch=else_branch)
    y = g.node("Relu", [y], "/post/Relu_output_0", "/post/Relu")
    g.node("MatMul", [y, g.normal("post.weight", (8, 4), 0.5)], "output", "/post/MatMul")
    return g.save(path, "if_branches", [_vi("x", FLOAT, [1, 8])], [_vi("output", FLOAT, [1, 4])], 13)


def loop_accumulate(path: Path) -> Path:
    """A ``Loop`` of three iterations carrying v <- 0.9 v + x (x from the outer scope), then a MatMul: the body's
    tensors are not observable; the Loop's output is."""
    g = _Graph(seed=23)
    trips, keep_going = g.init("loop.trips", 3, np.int64), g.init("loop.cond", True, np.bool_)
    decay = g.init("loop.decay", 0.9)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="/body/Identity"),
            helper.make_node("Mul", ["v_in", decay], ["v_decayed"], name="/body/Mul"),
            helper.make_node("Add", ["v_decayed", "x"], ["v_out"], name="/body/Add"),
        ],
        "loop_body",
        [_vi("iteration", INT64, []), _vi("cond_in", BOOL, []), _vi("v_in", FLOAT, [1, 8])],
        [_vi("cond_out", BOOL, []), _vi("v_out", FLOAT, [1, 8])],
    )
    y = g.node("Loop", [trips, keep_going, "x"], "/loop/Loop_output_0", "/loop/Loop", body=body)
    g.node("MatMul", [y, g.normal("post.weight", (8, 4), 0.5)], "output", "/post/MatMul")
    return g.save(path, "loop_accumulate", [_vi("x", FLOAT, [1, 8])], [_vi("output", FLOAT, [1, 4])], 13)


def int_image(path: Path) -> Path:
    """An int32 image input of byte values (0..255) cast to float inside the graph, normalised, then Conv/Relu
    and a classifier: the integer input and the Cast are not floating activations of the model's arithmetic."""
    g = _Graph(seed=31)
    x = g.node("Cast", ["image"], "/prep/Cast_output_0", "/prep/Cast", to=FLOAT)
    x = g.node("Mul", [x, g.init("prep.scale", 1.0 / 255.0)], "/prep/Mul_output_0", "/prep/Mul")
    x = g.node("Sub", [x, g.init("prep.mean", 0.5)], "/prep/Sub_output_0", "/prep/Sub")
    w, b = g.normal("conv.weight", (8, 3, 3, 3), 0.3), g.normal("conv.bias", (8,), 0.1)
    x = g.node("Conv", [x, w, b], "/conv/Conv_output_0", "/conv/Conv", pads=[1, 1, 1, 1])
    x = g.node("Relu", [x], "/conv/Relu_output_0", "/conv/Relu")
    _classifier(g, x, 8)
    return g.save(path, "int_image", [_vi("image", INT32, [1, 3, 16, 16])], [_vi("logits", FLOAT, [1, 10])], 13)


VOCAB, POSITIONS = 100, 16


def token_embedding(path: Path) -> Path:
    """Token ids (int64 [1, 12], values 0..99) into Gather on an embedding table, plus a 0-d int64 scalar input
    (a position, 0..15) into Gather on a position table; the sum is pooled and projected."""
    g = _Graph(seed=37)
    table = g.normal("embed.weight", (VOCAB, 32), 1.0)
    pos_table = g.normal("pos.weight", (POSITIONS, 32), 0.1)
    e = g.node("Gather", [table, "input_ids"], "/embed/Gather_output_0", "/embed/Gather", axis=0)
    p = g.node("Gather", [pos_table, "position"], "/pos/Gather_output_0", "/pos/Gather", axis=0)
    h = g.node("Add", [e, p], "/embed/Add_output_0", "/embed/Add")
    h = g.node("ReduceMean", [h], "/pool/ReduceMean_output_0", "/pool/ReduceMean", axes=[1], keepdims=0)
    g.node("MatMul", [h, g.normal("proj.weight", (32, 8), 0.2)], "output", "/proj/MatMul")
    inputs = [_vi("input_ids", INT64, [1, 12]), _vi("position", INT64, [])]
    return g.save(path, "token_embedding", inputs, [_vi("output", FLOAT, [1, 8])], 13)


def weight_subgraphs(path: Path) -> Path:
    """Weight-only and shape subgraphs around a small conv block, as exporters leave them: a Constant node as
    the conv bias, a BatchNormalization scale computed from initializers (Mul), an Unsqueeze of a per-channel
    gain vector (DenseNet's pattern), a ConstantOfShape offset, and Shape -> Gather -> Unsqueeze -> Concat ->
    Reshape on int64 before the classifier. Only Conv, BatchNormalization, Relu, the gain Mul, the offset Add,
    Reshape and Gemm compute on activations."""
    g = _Graph(seed=41)
    bias = g.node(
        "Constant",
        [],
        "/conv/bias",
        "/conv/Constant",
        value=numpy_helper.from_array(g.rng.normal(0, 0.1, 8).astype(np.float32)),
    )
    w = g.normal("conv.weight", (8, 4, 3, 3), 0.3)
    x = g.node("Conv", ["x", w, bias], "/conv/Conv_output_0", "/conv/Conv", pads=[1, 1, 1, 1])
    scale = g.node(
        "Mul", [g.init("bn.raw_scale", g.rng.uniform(0.5, 1.5, 8)), g.init("bn.two", 2.0)], "/bn/scale", "/bn/Mul"
    )
    stats = [g.init("bn.bias", np.zeros(8)), g.init("bn.mean", np.zeros(8)), g.init("bn.var", np.ones(8))]
    x = g.node("BatchNormalization", [x, scale, *stats], "/bn/BatchNormalization_output_0", "/bn/BatchNormalization")
    x = g.node("Relu", [x], "/relu/Relu_output_0", "/relu/Relu")
    gain = g.node(
        "Unsqueeze",
        [g.init("gate.gain", g.rng.uniform(0.5, 1.5, 8)), g.init("gate.axes", [1, 2], np.int64)],
        "/gate/Unsqueeze_output_0",
        "/gate/Unsqueeze",
    )
    x = g.node("Mul", [x, gain], "/gate/Mul_output_0", "/gate/Mul")
    offset = g.node(
        "ConstantOfShape",
        [g.init("offset.shape", [1, 8, 1, 1], np.int64)],
        "/offset/ConstantOfShape_output_0",
        "/offset/ConstantOfShape",
        value=numpy_helper.from_array(np.array([0.5], np.float32)),
    )
    x = g.node("Add", [x, offset], "/offset/Add_output_0", "/offset/Add")
    shape = g.node("Shape", [x], "/flat/Shape_output_0", "/flat/Shape")
    batch = g.node("Gather", [shape, g.init("flat.zero", 0, np.int64)], "/flat/Gather_output_0", "/flat/Gather", axis=0)
    batch = g.node(
        "Unsqueeze", [batch, g.init("flat.axes", [0], np.int64)], "/flat/Unsqueeze_output_0", "/flat/Unsqueeze"
    )
    target = g.node(
        "Concat", [batch, g.init("flat.rest", [-1], np.int64)], "/flat/Concat_output_0", "/flat/Concat", axis=0
    )
    x = g.node("Reshape", [x, target], "/flat/Reshape_output_0", "/flat/Reshape")
    fc_w, fc_b = g.normal("fc.weight", (10, 8 * 8 * 8), 0.05), g.normal("fc.bias", (10,), 0.1)
    g.node("Gemm", [x, fc_w, fc_b], "logits", "/fc/Gemm", transB=1)
    return g.save(path, "weight_subgraphs", [_vi("x", FLOAT, [1, 4, 8, 8])], [_vi("logits", FLOAT, [1, 10])], 13)


def overflow_cnn(path: Path) -> Path:
    """A small CNN whose activations overflow FP16 everywhere: an unnormalised image (0..255) into a first conv
    with large positive weights (60..120, each well inside FP16) gives every output > 1e5, so in FP16 every
    element of it is Inf, and from the next conv on (Inf - Inf) NaN; at FP32 everything is finite."""
    g = _Graph(seed=43)
    w0 = g.init("conv0.weight", g.rng.uniform(60.0, 120.0, (8, 3, 3, 3)))
    x = g.node("Conv", ["image", w0], "/conv0/Conv_output_0", "/conv0/Conv")
    x = g.node("Relu", [x], "/conv0/Relu_output_0", "/conv0/Relu")
    x = g.node("Conv", [x, g.normal("conv1.weight", (8, 8, 3, 3), 0.2)], "/conv1/Conv_output_0", "/conv1/Conv")
    x = g.node("Relu", [x], "/conv1/Relu_output_0", "/conv1/Relu")
    _classifier(g, x, 8)
    return g.save(path, "overflow_cnn", [_vi("image", FLOAT, [1, 3, 16, 16])], [_vi("logits", FLOAT, [1, 10])], 13)


FP16_HOSTILE_WIDTH = 16


def fp16_hostile_chain(path: Path, blocks: int = 6, hostile: tuple[int, ...] = (1, 4)) -> Path:
    """A chain of ``blocks`` MatMuls whose minimal set of layers to keep in FP32 is known: exactly the blocks in
    ``hostile``. A harmless block multiplies by a random orthogonal matrix (the scale stays ~1, FP16 rounding
    costs ~60 dB SQNR). A hostile block first divides by 1e4 (harmless: ~1e-4 is inside FP16's range) and
    then multiplies by a signed permutation scaled by 70000: every weight exceeds FP16's 65504, so FP16
    clamps it and every element of the block's output is 6.4% low (SQNR ~24 dB), while its input (~1e-4) and
    output (~7) fit FP16. Pinning a hostile MatMul removes its error; nothing else does, and every layer
    after it inherits the error. Layers are named ``/blocks.{i}/MatMul`` (and ``/blocks.{i}/Div``)."""
    g = _Graph(seed=44 + blocks + sum(hostile))
    n = FP16_HOSTILE_WIDTH
    x = "x"
    for i in range(blocks):
        if i in hostile:
            x = g.node("Div", [x, g.init(f"blocks.{i}.scale", 1e4)], f"/blocks.{i}/Div_output_0", f"/blocks.{i}/Div")
            perm = np.eye(n)[g.rng.permutation(n)] * g.rng.choice([-1.0, 1.0], n)
            w = g.init(f"blocks.{i}.weight", perm * 70000.0)
        else:
            q, _ = np.linalg.qr(g.rng.normal(0.0, 1.0, (n, n)))
            w = g.init(f"blocks.{i}.weight", q)
        out = "y" if i == blocks - 1 else f"/blocks.{i}/MatMul_output_0"
        x = g.node("MatMul", [x, w], out, f"/blocks.{i}/MatMul")
    return g.save(path, "fp16_hostile_chain", [_vi("x", FLOAT, [1, n])], [_vi("y", FLOAT, [1, n])], 13)


def _normal(shape: list[int]) -> dict[str, Any]:
    return {"shape": shape, "source": {"random": "normal", "seed": 0}}


def _uniform(shape: list[int], low: float, high: float, dtype: str = "float32") -> dict[str, Any]:
    return {"shape": shape, "dtype": dtype, "source": {"random": "uniform", "low": low, "high": high, "seed": 0}}


@dataclass(frozen=True)
class ZooCase:
    """A generator with the ``inputs`` section a config needs for it and the opset it declares."""

    build: Callable[[Path], Path]
    inputs: dict[str, dict[str, Any]]
    opset: int
    issue_items: tuple[int, ...] = field(default=())  # the items of issue 10 it reproduces

    @property
    def name(self) -> str:
        return self.build.__name__


CASES: dict[str, ZooCase] = {
    c.name: c
    for c in (
        ZooCase(cnn_opset9, {"image": _normal([1, 3, 32, 32])}, 9, (2, 3)),
        ZooCase(cnn_opset11, {"image": _normal([1, 3, 32, 32])}, 11, (2, 3)),
        ZooCase(detection_scalars, {"features": _normal([1, 16, 10, 10])}, 13, (1,)),
        ZooCase(layernorm_primitive, {"hidden": _normal([1, _TOKENS, _HIDDEN])}, 17, (4,)),
        ZooCase(layernorm_op, {"hidden": _normal([1, _TOKENS, _HIDDEN])}, 17, (4,)),
        ZooCase(if_branches, {"x": _normal([1, 8])}, 13, (9,)),
        ZooCase(loop_accumulate, {"x": _normal([1, 8])}, 13, (9,)),
        ZooCase(int_image, {"image": _uniform([1, 3, 16, 16], 0, 255, "int32")}, 13, (5, 9)),
        ZooCase(
            token_embedding,
            {
                "input_ids": _uniform([1, 12], 0, VOCAB - 1, "int64"),
                "position": _uniform([], 0, POSITIONS - 1, "int64"),
            },
            13,
            (5, 9),
        ),
        ZooCase(weight_subgraphs, {"x": _normal([1, 4, 8, 8])}, 13, (5,)),
        ZooCase(overflow_cnn, {"image": _uniform([1, 3, 16, 16], 0, 255)}, 13, (4,)),
    )
}
