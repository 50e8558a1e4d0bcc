"""What the rest of the tool needs to know about an ONNX model, without its weights.

A :class:`ModelSummary` lists the nodes in network (topological) order with their inputs, outputs and
op types, the graph inputs and outputs, the type and shape of every tensor shape inference can tell, and
the external-data files the model refers to. It is computed once per model digest and cached as JSON, so
validating or planning an unchanged config never parses the model again.

Node names are the user-facing names of layers, so every node must have a unique one: unnamed nodes are
named after their first output tensor (unique by ONNX rules), and duplicates get a ``#n`` suffix. The same
:func:`normalize_names` runs before every lowering, so names agree everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import NoneType
from typing import Any

SUMMARY_VERSION = "4"  # 3: external data of every tensor; subgraph tensors listed (both "3" on their branches)

# ONNX TensorProto.DataType -> the dtype name used throughout layerscope (numpy / ml_dtypes spelling).
ELEM_TYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
    17: "float8_e4m3fn",
    18: "float8_e4m3fnuz",
    19: "float8_e5m2",
    20: "float8_e5m2fnuz",
}
FLOAT_TYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
_SHAPE_OF = frozenset({"Shape", "Size", "Constant"})  # outputs that never depend on input values


@dataclass(frozen=True)
class NodeInfo:
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    index: int  # position in network order
    # Tensors computed inside the node's subgraphs (If branches, Loop/Scan bodies), recursively: a runtime
    # returns only main-graph values, so these cannot be observed.
    subgraph_tensors: tuple[str, ...] = ()

    @property
    def subgraph(self) -> bool:
        return bool(self.subgraph_tensors) or self.op_type in ("If", "Loop", "Scan")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str | None  # None when shape inference could not tell
    shape: tuple[int | str | None, ...] | None

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_TYPES


def _tensor_record(t: dict[str, Any]) -> TensorInfo:
    """A tensor's record as :meth:`ModelSummary.to_json` writes it, back as a TensorInfo."""
    shape = tuple(t["shape"]) if t["shape"] is not None else None
    return TensorInfo(t["name"], t["dtype"], shape)


def _well_formed(t: Any) -> bool:
    """A tensor record :func:`_tensor_record` can make a TensorInfo of."""
    shape = t.get("shape", 0) if type(t) is dict else 0
    return type(shape) in (list, NoneType) and type(t.get("name")) is str and "dtype" in t


class _Tensors(Mapping[str, TensorInfo]):
    """A summary's tensors as read from its JSON, made into TensorInfo objects on first use, all at once: a
    cached rerun plans from the nodes and the remembered tensor selection and never reads the tensors, and
    building 16,001 of them was a tenth of the warm rerun of an 8,000-layer chain."""

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self._records: dict[str, dict[str, Any]] | None = records
        self._made: dict[str, TensorInfo] = {}

    def _all(self) -> dict[str, TensorInfo]:
        if self._records is not None:
            self._made = {k: _tensor_record(v) for k, v in self._records.items()}
            self._records = None
        return self._made

    def __getitem__(self, name: str) -> TensorInfo:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


@dataclass(frozen=True)
class ModelSummary:
    nodes: tuple[NodeInfo, ...]
    inputs: tuple[TensorInfo, ...]  # graph inputs that are not initializers
    outputs: tuple[TensorInfo, ...]
    tensors: Mapping[str, TensorInfo] = field(default_factory=dict)
    initializers: frozenset[str] = frozenset()
    opsets: dict[str, int] = field(default_factory=dict)
    external_data: tuple[str, ...] = ()  # relative locations, as written in the model
    ir_version: int = 0
    producer: str = ""

    def node(self, name: str) -> NodeInfo:
        return self._by_name()[name]

    def _by_name(self) -> dict[str, NodeInfo]:
        cache = self.__dict__.get("_by_name_cache")
        if cache is None:
            cache = {n.name: n for n in self.nodes}
            object.__setattr__(self, "_by_name_cache", cache)
        return cache

    def producer_of(self) -> dict[str, NodeInfo]:
        return {t: n for n in self.nodes for t in n.outputs if t}

    def static_nodes(self) -> set[str]:
        """Nodes whose outputs do not depend on the input values: computed only from initializers and Constants
        (weight-only subgraphs, transitively), Constant/ConstantOfShape, and shape arithmetic (Shape and Size
        read only their input's shape; what is computed from them is static too)."""
        cache = self.__dict__.get("_static_cache")
        if cache is not None:
            return set(cache)
        static_tensors = set(self.initializers)
        static: set[str] = set()
        for n in self.nodes:
            inputs = [t for t in n.inputs if t]
            if n.subgraph or n.op_type.startswith("Random"):
                continue
            if n.op_type in _SHAPE_OF or all(t in static_tensors for t in inputs):
                static.add(n.name)
                static_tensors.update(t for t in n.outputs if t)
        object.__setattr__(self, "_static_cache", frozenset(static))
        return static

    def empty(self, tensor: str) -> bool:
        """Shape inference says the tensor has no elements (a dimension of 0)."""
        info = self.tensors.get(tensor)
        return info is not None and info.shape is not None and any(d == 0 for d in info.shape)

    def float_outputs(self, node: NodeInfo) -> list[str]:
        return [t for t in node.outputs if t and self.tensors.get(t, TensorInfo(t, None, None)).is_float]

    def to_json(self) -> str:
        data = asdict(self)
        data["initializers"] = sorted(self.initializers)
        data["tensors"] = {k: asdict(v) for k, v in self.tensors.items()}
        data["version"] = SUMMARY_VERSION
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ModelSummary:
        d = json.loads(text)
        if d.get("version") != SUMMARY_VERSION:
            raise ValueError("summary format changed")

        tensor = _tensor_record
        tensors = d["tensors"]
        # Checked now, made later (_Tensors): a damaged record fails here, where the caller summarizes anew.
        if not isinstance(tensors, dict) or not all(_well_formed(t) for t in tensors.values()):
            raise ValueError("summary tensors are not tensor records")
        return cls(
            nodes=tuple(
                NodeInfo(
                    n["name"],
                    n["op_type"],
                    n["domain"],
                    tuple(n["inputs"]),
                    tuple(n["outputs"]),
                    n["index"],
                    tuple(n.get("subgraph_tensors", ())),
                )
                for n in d["nodes"]
            ),
            inputs=tuple(tensor(t) for t in d["inputs"]),
            outputs=tuple(tensor(t) for t in d["outputs"]),
            tensors=_Tensors(tensors),
            initializers=frozenset(d["initializers"]),
            opsets=dict(d["opsets"]),
            external_data=tuple(d["external_data"]),
            ir_version=int(d["ir_version"]),
            producer=str(d["producer"]),
        )


def normalize_names(model: Any) -> None:
    """Give every node of the main graph a unique, non-empty name (in place)."""
    seen: set[str] = set()
    for node in model.graph.node:
        base = node.name or (node.output[0] if node.output and node.output[0] else node.op_type)
        name, i = base, 1
        while name in seen:
            name = f"{base}#{i}"
            i += 1
        node.name = name
        seen.add(name)


def _tensor_info(vi: Any) -> TensorInfo:
    tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
    if tt is None:
        return TensorInfo(vi.name, None, None)
    dtype = ELEM_TYPES.get(tt.elem_type) if tt.elem_type else None
    if not tt.HasField("shape"):
        return TensorInfo(vi.name, dtype, None)
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorInfo(vi.name, dtype, tuple(dims))


def _all_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph holds, where ``onnx.load`` looks for external data: initializers (sparse ones too),
    tensor attributes of nodes (a Constant's value), and the same in subgraphs (If, Loop, Scan bodies)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def _subgraph_tensors(node: Any) -> list[str]:
    """The tensors a node's subgraphs (attributes of type GRAPH/GRAPHS) compute, recursively, in order."""
    out: list[str] = []
    graphs = [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
    for g in graphs:
        for inner in g.node:
            out.extend(t for t in inner.output if t and t not in out)
            out.extend(t for t in _subgraph_tensors(inner) if t not in out)
    return out


def summarize(path: Path) -> ModelSummary:
    """Parse the model's structure (weights are not loaded) and infer tensor types and shapes."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    normalize_names(model)
    external: list[str] = []
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for kv in tensor.external_data:
                if kv.key == "location" and kv.value not in external:
                    external.append(kv.value)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is best effort: a model ORT can run may still defeat it
        inferred = model
    g = inferred.graph
    init_names = {i.name for i in g.initializer}
    tensors: dict[str, TensorInfo] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tensors[vi.name] = _tensor_info(vi)
    for init in g.initializer:
        tensors[init.name] = TensorInfo(init.name, ELEM_TYPES.get(init.data_type), tuple(int(d) for d in init.dims))
    nodes = tuple(
        NodeInfo(n.name, n.op_type, n.domain, tuple(n.input), tuple(n.output), i, tuple(_subgraph_tensors(n)))
        for i, n in enumerate(model.graph.node)
    )
    return ModelSummary(
        nodes=nodes,
        inputs=tuple(_tensor_info(vi) for vi in model.graph.input if vi.name not in init_names),
        outputs=tuple(tensors.get(vi.name, _tensor_info(vi)) for vi in model.graph.output),
        tensors=tensors,
        initializers=frozenset(init_names),
        opsets={o.domain or "ai.onnx": int(o.version) for o in model.opset_import},
        external_data=tuple(external),
        ir_version=int(model.ir_version),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )
