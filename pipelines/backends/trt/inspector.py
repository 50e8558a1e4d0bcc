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
(a fused Cast may make its output FP32 while it computed in FP16), and "ran fp32" when all are FP32.
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
            layers.append(EngineLayer(i, str(item), "", tuple(_nodes_in_name(str(item), known)), (), ()))
            continue
        detailed = True
        name = str(item.get("Name", f"layer {i}"))
        nodes = onnx_layers(str(item.get("Metadata", ""))) or _nodes_in_name(name, known)
        layers.append(
            EngineLayer(
                i,
                name,
                str(item.get("LayerType", "")),
                tuple(nodes),
                tuple(_tensor(t) for t in item.get("Inputs", []) or []),
                tuple(_tensor(t) for t in item.get("Outputs", []) or []),
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


def precision_audit(info: EngineInfo, nodes: Mapping[str, Mapping[str, str]], *, source: str) -> dict[str, Any]:
    """Per ONNX layer (``nodes``: name -> {op_type, precision asked}, network order): the engine layer it
    became, what it was fused with, the precision its tensors show, and a flag when that is not what was
    asked (asked reduced, ran FP32 -- the question this tool started from -- or pinned FP32, ran reduced)."""
    where: dict[str, list[EngineLayer]] = {}
    for layer in info.layers:
        for node in layer.onnx_nodes:
            where.setdefault(node, []).append(layer)
    rows: list[dict[str, Any]] = []
    ran_fp32: list[str] = []
    absent: list[str] = []
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
        flag = None
        if asked in REDUCED and ran == "fp32":
            flag = f"asked {asked}, ran fp32"
            ran_fp32.append(node)
        elif asked == "fp32" and ran in REDUCED:
            flag = f"pinned fp32, ran {ran}"
        fused = [n for n in main.onnx_nodes if n != node and n in nodes]
        rows.append(
            {
                **row,
                "ran": ran,
                "engine_layer": main.name,
                "engine_layer_type": main.layer_type,
                "fused_with": fused,
                "io": io,
                "flag": flag,
            }
        )
    if not info.detailed:
        summary = "the engine has no DETAILED layer information: precisions unknown"
    elif reduced_asked:
        fmt = next((r["asked"] for r in rows if r["asked"] in REDUCED), "reduced")
        summary = f"{len(ran_fp32)} of {reduced_asked} layers asked to run {fmt} ran fp32"
    else:
        summary = f"all {len(rows)} layers asked to run fp32"
    if absent:
        summary += f"; {len(absent)} not in the engine"
    return {
        "source": source,
        "inspector_format": info.layout,
        "summary": summary,
        "ran_fp32": ran_fp32,
        "not_in_engine": absent,
        "layers": rows,
    }


def unfused_names(
    info: EngineInfo,
    requested: Sequence[str],
    producers: Mapping[str, str],
    graph: Mapping[str, tuple[int, str, tuple[str, ...]]],
) -> tuple[dict[str, str], dict[str, str]]:
    """Map the engine's tensor names (what a debug listener receives for unfused tensors) to requested
    lowered ONNX tensor names: ({engine name: onnx name}, {onnx name not observable: reason}).

    ``producers``: tensor -> node that writes it; ``graph``: node -> (network index, op type, outputs).
    A tensor that kept its ONNX name is matched by name. Otherwise a single-output engine layer carries
    the value of the last ONNX node it fused (in network order, not counting Casts: a fused FP16 -> FP32
    Cast leaves the value unchanged) when that node's output was requested. Everything else has no
    unfused value in this engine.
    """
    wanted = set(requested)
    mapping: dict[str, str] = {}
    for layer in info.layers:
        for out in layer.outputs:
            if out.name in wanted and out.name not in mapping.values():
                mapping[out.name] = out.name
    for layer in info.layers:
        if len(layer.outputs) != 1 or layer.outputs[0].name in mapping or layer.layer_type in _PASSTHROUGH:
            continue
        fused = sorted((n for n in layer.onnx_nodes if n in graph), key=lambda n: graph[n][0])
        while fused and graph[fused[-1]][1] == "Cast":
            fused.pop()
        if not fused:
            continue
        hits = [t for t in graph[fused[-1]][2] if t in wanted]
        if len(hits) == 1 and hits[0] not in mapping.values():
            mapping[layer.outputs[0].name] = hits[0]
    seen = set(mapping.values())
    in_layer = {n: layer.name for layer in info.layers for n in layer.onnx_nodes}
    missing: dict[str, str] = {}
    for t in requested:
        if t in seen:
            continue
        node = producers.get(t, "")
        if node in in_layer:
            missing[t] = f"not observable in this engine: fused into engine layer {in_layer[node]!r}"
        else:
            missing[t] = "not observable in this engine: its layer was folded or removed when the engine was built"
    return mapping, missing
