"""The engine inspector's JSON -> per-ONNX-layer precision audit and the names of unfused debug tensors.

Where the format comes from (there is no schema; these are NVIDIA's documented examples and its own
parsers): ``IEngineInspector::getEngineInformation(LayerInformationFormat::kJSON)`` returns
``{"Layers": [...], ...}``. With ``ProfilingVerbosity::kDETAILED`` every layer is an object with ``Name``,
``LayerType``, ``Inputs`` and ``Outputs`` (tensor objects with ``Name``, ``Location``, ``Dimensions`` and,
in TensorRT 10.x, one ``"Format/Datatype"`` string such as ``"Row major linear FP16 format"`` or a bare
``"Half"``), ``Metadata`` (the ONNX parser's ``[ONNX Layer: <node>]`` records of every node the layer
came from, separated by U+001E or U+001F, as NVIDIA's trex parser handles them), and tactic fields; with
less verbosity ``Layers`` is a list of names. TensorRT 10.x adds ``"Bindings": [names]``. TensorRT 11
replaces ``Bindings`` by ``"I/O Tensors"`` (objects with ``Name``, ``IOMode``, ``DataType``, ...) and splits
the tensor format string into separate format and data-type fields (NVIDIA's 10.x -> 11.x IEngineInspector
migration guide, whose I/O Tensors example spells them ``Format`` and ``DataType``; the per-layer spelling
could not be confirmed here). Tensors are read from whichever of ``DataType``, ``Datatype``,
``Format/Datatype`` and ``Format`` is present, so both layouts give the same result.

The inspector reports the data type of each engine layer's input and output tensors, not the math
precision of its kernel; the audit calls a layer "ran fp16" when a float tensor it reads or writes is FP16
(a fused Cast may make its output FP32 while it computed in FP16), and "ran fp32" when all are FP32. The
kernel's own precision is read, where its name says it, from the ``TacticName`` (:func:`kernel_precision`):
on a strongly typed engine, whose tensor types are fixed by the graph, an FP32 or TF32 kernel and a
precision conversion TensorRT inserted are what the audit can still catch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_ONNX_LAYER = re.compile(r"\[ONNX Layer: (.*?)\](?=[\x1e\x1f]|\[ONNX Layer: |$)", re.DOTALL)
# Data-type words in the inspector's strings (10.x "Format/Datatype" text, 11.x "DataType" values).
_DTYPE_WORDS = {
    "fp32": "fp32",
    "float": "fp32",
    "float32": "fp32",
    "kfloat": "fp32",
    "fp16": "fp16",
    "half": "fp16",
    "float16": "fp16",
    "khalf": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "kbf16": "bf16",
    "fp8": "fp8",
    "kfp8": "fp8",
    "e4m3": "fp8",
    "int8": "int8",
    "kint8": "int8",
    "fp4": "fp4",
    "int4": "int4",
    "int32": "int32",
    "kint32": "int32",
    "int64": "int64",
    "kint64": "int64",
    "bool": "bool",
    "kbool": "bool",
    "uint8": "uint8",
    "kuint8": "uint8",
    "e8m0": "e8m0",
}
FLOATS = ("fp32", "fp16", "bf16", "fp8", "int8", "fp4", "int4")  # values that carry activations
REDUCED = ("fp16", "bf16", "fp8", "int8", "fp4", "int4")
_PASSTHROUGH = {"Reformat", "NoOp", "Shuffle"}  # layers that move a value rather than compute it
# A reformat TensorRT inserted names the engine layer it converts for, not an ONNX node of its own.
_REFORMAT_TARGET = re.compile(r"^Reformatting CopyNode for (?:Input|Output) Tensor \d+ to (.*)$")


def onnx_layers(metadata: str) -> list[str]:
    """ONNX node names in a layer's ``Metadata`` ('[ONNX Layer: a]\\x1e[ONNX Layer: b]' -> ['a', 'b'])."""
    return [m.group(1) for m in _ONNX_LAYER.finditer(metadata or "")]


def dtype_of(text: str | None) -> str | None:
    """'Row major linear FP16 format' / 'Half' / 'Float' -> 'fp16' / 'fp16' / 'fp32'; None if not stated."""
    for word in re.split(r"[^0-9A-Za-z]+", text or ""):
        if word.lower() in _DTYPE_WORDS:
            return _DTYPE_WORDS[word.lower()]
    return None


@dataclass(frozen=True)
class TensorFormat:
    name: str
    dtype: str | None  # fp32, fp16, ... (None: not stated, e.g. "N/A due to dynamic shapes")
    text: str  # the format as the inspector wrote it


@dataclass(frozen=True)
class EngineLayer:
    index: int
    name: str
    layer_type: str
    onnx_nodes: tuple[str, ...]
    inputs: tuple[TensorFormat, ...]
    outputs: tuple[TensorFormat, ...]
    tactic: str = ""  # the kernel TensorRT picked ("TacticName"), when the inspector names one


@dataclass(frozen=True)
class EngineInfo:
    layers: tuple[EngineLayer, ...]
    io_tensors: tuple[str, ...]
    detailed: bool  # False: built without DETAILED profiling verbosity (names only)
    layout: str  # "10.x" (Bindings) | "11.x" (I/O Tensors) | "unknown"


def _tensor(obj: Any) -> TensorFormat:
    if not isinstance(obj, dict):
        return TensorFormat(str(obj), None, "")
    text = next((str(obj[k]) for k in ("DataType", "Datatype", "Format/Datatype", "Format") if k in obj), "")
    dtype = dtype_of(text)
    if dtype is None and "Format" in obj:  # an 11.x DataType we do not know may still be named in Format
        dtype = dtype_of(str(obj["Format"]))
    return TensorFormat(str(obj.get("Name", "")), dtype, text)


def parse_engine_information(text: str, node_names: Sequence[str] = ()) -> EngineInfo:
    """Parse ``get_engine_information(LayerInformationFormat.JSON)``. ``node_names`` (the ONNX graph's)
    let a layer without ``Metadata`` be matched by its name ('conv0 + relu0' fuses conv0 and relu0)."""
    data = json.loads(text)
    raw = data.get("Layers", []) if isinstance(data, dict) else data
    known = set(node_names)
    layers = []
    detailed = False
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            found = [] if _REFORMAT_TARGET.match(str(item)) else _nodes_in_name(str(item), known)
            layers.append(EngineLayer(i, str(item), "", tuple(found), (), ()))
            continue
        detailed = True
        name = str(item.get("Name", f"layer {i}"))
        nodes = onnx_layers(str(item.get("Metadata", "")))
        if not nodes and not _REFORMAT_TARGET.match(name):
            nodes = _nodes_in_name(name, known)
        layers.append(
            EngineLayer(
                i,
                name,
                str(item.get("LayerType", "")),
                tuple(nodes),
                tuple(_tensor(t) for t in item.get("Inputs", []) or []),
                tuple(_tensor(t) for t in item.get("Outputs", []) or []),
                str(item.get("TacticName", "") or ""),
            )
        )
    layout, io = "unknown", []
    if isinstance(data, dict) and "I/O Tensors" in data:
        layout, io = "11.x", [str(t.get("Name", "")) for t in data["I/O Tensors"] if isinstance(t, dict)]
    elif isinstance(data, dict) and "Bindings" in data:
        layout, io = "10.x", [str(b) for b in data["Bindings"]]
    return EngineInfo(tuple(layers), tuple(io), detailed, layout)


def _nodes_in_name(name: str, known: set[str]) -> list[str]:
    return [part for part in name.split(" + ") if part in known]


def _ran(layer: EngineLayer, asked: str) -> tuple[str | None, str]:
    """(precision the layer's tensors show, 'in fp16 -> out fp32') from its float inputs and outputs."""
    ins = [t.dtype for t in layer.inputs if t.dtype in FLOATS]
    outs = [t.dtype for t in layer.outputs if t.dtype in FLOATS]
    io = f"in {'/'.join(dict.fromkeys(ins)) or '—'} → out {'/'.join(dict.fromkeys(outs)) or '—'}"
    seen = set(ins + outs)
    if asked in seen and asked in REDUCED:
        return asked, io
    reduced = [d for d in REDUCED if d in seen]
    if reduced:
        return reduced[0], io
    return ("fp32" if "fp32" in seen else None), io


def _main_layer(layers: list[EngineLayer]) -> EngineLayer:
    """Of the engine layers a node appears in, the one that computes it (not a reformat or copy)."""
    return next((x for x in layers if x.layer_type not in _PASSTHROUGH), layers[0])


# What a tactic's name says about its math, by NVIDIA's kernel naming (trex's published engines:
# "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_...", "ampere_h16816cudnn_...", "..._hmma_fprop_f16f16f32_...",
# "sm80_xmma_..._f32f32_tf32f32_f32_...", "ampere_scudnn_...", "sm50_xmma_pooling_fw_4d_FP16FP32NHWC_..."):
# the first pattern that matches a token wins, so TF32 is found before FP32 and FP16 inputs with FP32
# accumulation count as FP16. Names that say nothing (Myelin's generated kernels) give None.
_KERNEL_PATTERNS = (
    ("tf32", re.compile(r"tf32")),
    ("fp8", re.compile(r"e4m3|e5m2|fp8")),
    ("bf16", re.compile(r"bf16")),
    ("int8", re.compile(r"^i8|int8|imma")),
    ("fp16", re.compile(r"^f16|fp16|hmma|half|^h\d{3,5}(cudnn|gemm)")),
    ("fp32", re.compile(r"^f32|fp32|scudnn|sgemm")),
)


def kernel_precision(tactic: str) -> str | None:
    """'sm80_xmma_..._f16f16_f16f16_f16_...' -> 'fp16'; 'ampere_scudnn_128x64_...' -> 'fp32'; None if unsaid."""
    tokens = [t for t in re.split(r"[^0-9a-z]+", tactic.lower()) if t]
    for kind, pattern in _KERNEL_PATTERNS:
        if any(pattern.search(t) for t in tokens):
            return kind
    return None


def _flag(asked: str, ran: str | None, kernel: str | None) -> str | None:
    """What contradicts the request: the tensors' precision first, then the kernel's."""
    if asked in REDUCED and ran == "fp32":
        return f"asked {asked}, ran fp32"
    if asked == "fp32" and ran in REDUCED:
        return f"pinned fp32, ran {ran}"
    if asked in REDUCED and kernel in ("fp32", "tf32"):
        return f"asked {asked}, {kernel} kernel"
    if asked == "fp32" and kernel is not None and kernel != "fp32":
        return f"asked fp32, {kernel} kernel"
    return None


def inserted_conversions(info: EngineInfo, casts: Mapping[str, str]) -> list[dict[str, str]]:
    """Reformat layers that change a float value's precision and that no Cast of the graph accounts for:
    on a strongly typed engine every conversion should be one of the graph's Casts, so these are what
    TensorRT chose on its own. A Reformat carries no ONNX node; the engine layer it converts for is in its
    name ("Reformatting CopyNode for Input Tensor 0 to <layer>"), and a Cast fused into that layer
    accounts for a conversion to the Cast's type. ``casts``: Cast node -> the type it converts to."""
    by_name = {layer.name: layer for layer in info.layers}
    out = []
    for layer in info.layers:
        if layer.layer_type != "Reformat" or layer.onnx_nodes:
            continue
        ins = {t.dtype for t in layer.inputs if t.dtype in FLOATS}
        outs = {t.dtype for t in layer.outputs if t.dtype in FLOATS}
        if not ins or not outs or ins == outs:
            continue
        m = _REFORMAT_TARGET.match(layer.name)
        target = by_name.get(m.group(1)) if m else None
        nodes = target.onnx_nodes if target else _nodes_in_name(m.group(1), set(casts)) if m else []
        if any(casts.get(n) in outs for n in nodes):
            continue
        out.append({"engine_layer": layer.name, "io": f"in {'/'.join(sorted(ins))} → out {'/'.join(sorted(outs))}"})
    return out


def precision_audit(
    info: EngineInfo, nodes: Mapping[str, Mapping[str, str]], *, source: str, casts: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Per ONNX layer (``nodes``: name -> {op_type, precision asked}, network order): the engine layer it
    became, what it was fused with, the precision its tensors show, the kernel TensorRT picked, and a flag
    when that is not what was asked (asked reduced, ran FP32 -- the question this tool started from --,
    pinned FP32 but ran reduced, or an FP32/TF32 kernel for a reduced layer); plus the precision
    conversions TensorRT inserted on its own (``casts``: the parsed graph's Cast nodes -> the type each
    converts to; see :func:`inserted_conversions`)."""
    where: dict[str, list[EngineLayer]] = {}
    for layer in info.layers:
        for node in layer.onnx_nodes:
            where.setdefault(node, []).append(layer)
    rows: list[dict[str, Any]] = []
    ran_fp32: list[str] = []
    absent: list[str] = []
    kernel_flags = 0
    reduced_asked = 0
    for node, spec in nodes.items():
        if spec["op_type"] == "Constant":
            continue  # weights, not layers
        asked = spec["precision"]
        reduced_asked += asked in REDUCED
        row: dict[str, Any] = {"node": node, "op_type": spec["op_type"], "asked": asked}
        found = where.get(node)
        if not found:
            absent.append(node)
            rows.append({**row, "ran": None, "engine_layer": None, "flag": "not in the engine (folded or removed)"})
            continue
        main = _main_layer(found)
        ran, io = _ran(main, asked) if info.detailed else (None, None)
        kernel = kernel_precision(main.tactic)
        flag = _flag(asked, ran, kernel)
        if flag == f"asked {asked}, ran fp32":
            ran_fp32.append(node)
        elif flag is not None and flag.endswith(" kernel"):
            kernel_flags += 1
        fused = [n for n in main.onnx_nodes if n != node and n in nodes]
        rows.append(
            {
                **row,
                "ran": ran,
                "engine_layer": main.name,
                "engine_layer_type": main.layer_type,
                "fused_with": fused,
                "io": io,
                "tactic": main.tactic or None,
                "kernel": kernel,
                "flag": flag,
            }
        )
    conversions = inserted_conversions(info, casts or {})
    if not info.detailed:
        summary = "the engine has no DETAILED layer information: precisions unknown"
    elif reduced_asked:
        fmt = next((r["asked"] for r in rows if r["asked"] in REDUCED), "reduced")
        summary = f"{len(ran_fp32)} of {reduced_asked} layers asked to run {fmt} ran fp32"
    else:
        summary = f"all {len(rows)} layers asked to run fp32"
    if kernel_flags:
        summary += f"; {kernel_flags} ran a kernel of another precision than asked"
    if absent:
        summary += f"; {len(absent)} not in the engine"
    if conversions:
        summary += f"; TensorRT inserted {len(conversions)} precision conversions (Reformat layers)"
    return {
        "source": source,
        "inspector_format": info.layout,
        "summary": summary,
        "ran_fp32": ran_fp32,
        "not_in_engine": absent,
        "inserted_conversions": conversions,
        "layers": rows,
    }


def unfused_sources(
    info: EngineInfo,
    requested: Sequence[str],
    producers: Mapping[str, str],
    graph: Mapping[str, tuple[int, str, tuple[str, ...]]],
) -> tuple[dict[str, str], dict[str, str]]:
    """Which engine tensor (what a debug listener receives for unfused tensors) carries each requested
    lowered ONNX tensor: ({onnx name: engine name}, {onnx name not observable: reason}).

    ``producers``: tensor -> node that writes it; ``graph``: node -> (network index, op type, outputs).
    A tensor that kept its ONNX name is matched by name. Otherwise a single-output engine layer carries
    the value of the last ONNX node it fused (in network order, not counting Casts: a fused FP16 -> FP32
    Cast leaves the value unchanged) when that node has one output; one engine tensor may so carry two
    ONNX tensors (a value and its Cast). The map is made for the whole graph and then cut to
    ``requested``, so a tensor maps to the same engine tensor whatever else was selected. Everything else
    has no unfused value in this engine.
    """
    produced = {t for _, _, outs in graph.values() for t in outs if t}
    sources: dict[str, str] = {}
    for layer in info.layers:
        for out in layer.outputs:
            if out.name in produced:
                sources.setdefault(out.name, out.name)
    for layer in info.layers:
        if len(layer.outputs) != 1 or layer.layer_type in _PASSTHROUGH:
            continue
        fused = sorted((n for n in layer.onnx_nodes if n in graph), key=lambda n: graph[n][0])
        while fused and graph[fused[-1]][1] == "Cast":
            fused.pop()
        if not fused:
            continue
        outs = [t for t in graph[fused[-1]][2] if t]
        if len(outs) == 1:
            sources.setdefault(outs[0], layer.outputs[0].name)
    in_layer = {n: layer.name for layer in info.layers for n in layer.onnx_nodes}
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for t in requested:
        if t in sources:
            found[t] = sources[t]
            continue
        node = producers.get(t, "")
        if node in in_layer:
            missing[t] = f"not observable in this engine: fused into engine layer {in_layer[node]!r}"
        else:
            missing[t] = "not observable in this engine: its layer was folded or removed when the engine was built"
    return found, missing
