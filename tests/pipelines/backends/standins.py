"""Stand-ins for the two pieces of the TensorRT backend that need TensorRT and a GPU (none here).

* :func:`build_engine` returns the ONNX bytes as the "engine", an inspector JSON in TensorRT 10.x's layout
  (Conv + BatchNormalization + Relu fused, MaxPool "running FP32", tactic names of both kinds) and a
  "timing cache" that is a JSON list of what was "timed";
* :class:`Runner` replaces :class:`~layerscope.pipelines.backends.trt.runtime.EngineRunner`: it runs that
  ONNX on ONNX Runtime and hands back the engine's outputs and, in the debug modes, the requested debug
  tensors -- except those named in :attr:`Runner.not_emitted`, as TensorRT does not promise to emit every
  unfused tensor;
* :func:`combine_timing_caches` unites two such lists.

Everything between -- lowering per route, marking per dump mode, the name map, the session, the shared
timing cache, the precision audit, unobservable tensors in the dump, the report -- is the real code.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from layerscope.pipelines.backends.trt import engine as trt_engine
from layerscope.pipelines.backends.trt import runtime as trt_runtime
from layerscope.pipelines.backends.trt.plan import DeviceFacts
from layerscope.pipelines.backends.trt.versions import parse_version

VERSION = "10.16.1.11"
DEVICE = DeviceFacts("NVIDIA Test GPU", "8.9", "12.4")


def _patches() -> list[tuple[Any, str, Any]]:
    return [
        (trt_engine, "build_engine", build_engine),
        (trt_engine, "combine_timing_caches", combine_timing_caches),
        (trt_runtime, "EngineRunner", Runner),
        (Runner, "not_emitted", set()),
        (Runner, "opened", []),
    ]


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    for target, name, value in _patches():
        monkeypatch.setattr(target, name, value)


def installed_facts(version: str = VERSION) -> dict[str, Any]:
    """What the TensorRT backend looks up once (cached properties), as if TensorRT ``version`` and a GPU were here."""
    return {"_unavailable": None, "installed_version": parse_version(version), "environment": DEVICE}


def main(argv: list[str]) -> int:
    """``python standins.py run CONFIG ...``: the layerscope CLI in a process with the stand-ins in place
    (what scripts/gpu-smoke's test launches instead of ``python -m layerscope``)."""
    from layerscope.cli import main as cli
    from layerscope.pipelines import backends

    for target, name, value in _patches():
        setattr(target, name, value)
    backends.get("tensorrt").__dict__.update(installed_facts())
    return cli(argv)


def build_engine(req: trt_engine.EngineRequest) -> trt_engine.EngineResult:
    import onnx

    proto = onnx.load(str(req.onnx_path), load_external_data=False)
    names = {o for n in proto.graph.node for o in n.output}
    missing = {t: "not observable in this engine: no such tensor" for t in (*req.marks.outputs, *req.marks.debug)}
    missing = {t: why for t, why in missing.items() if t not in names}
    shapes = {k: v for k, v in req.input_shapes.items() if v is not None}
    info = layer_information(proto, req.precision)
    timed = sorted({*json.loads(req.timing_cache or b"[]"), f"{req.precision}/{req.route}"})
    return trt_engine.EngineResult(
        req.onnx_path.read_bytes(), json.dumps(timed).encode(), info, shapes, missing, [], []
    )


def combine_timing_caches(ours: bytes, theirs: bytes) -> bytes:
    return json.dumps(sorted({*json.loads(ours), *json.loads(theirs)})).encode()


def layer_information(proto: Any, precision: str) -> str:
    nodes = list(proto.graph.node)
    layers, i = [], 0
    while i < len(nodes):
        group = [nodes[i]]
        while (
            group[-1].op_type in ("Conv", "BatchNormalization")
            and i + 1 < len(nodes)
            and nodes[i + 1].op_type in ("BatchNormalization", "Relu")
            and nodes[i + 1].input[0] == group[-1].output[0]
        ):
            i += 1
            group.append(nodes[i])
        i += 1
        dtype = "FP32" if precision == "fp32" or group[0].op_type == "MaxPool" else "FP16"
        fmt = f"Row major linear {dtype} format"
        conv = group[0].op_type == "Conv"
        tactic = "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc" if dtype == "FP16" else "ampere_scudnn"
        layers.append(
            {
                "Name": " + ".join(n.name for n in group),
                "LayerType": "CaskConvolution" if conv else "PointWiseV2",
                "Inputs": [{"Name": group[0].input[0], "Location": "Device", "Format/Datatype": fmt}],
                "Outputs": [{"Name": o, "Location": "Device", "Format/Datatype": fmt} for o in group[-1].output],
                "Metadata": "\x1e".join(f"[ONNX Layer: {n.name}]" for n in group),
                **({"TacticName": tactic} if conv else {}),
            }
        )
    return json.dumps({"Layers": layers, "Bindings": [o.name for o in proto.graph.output]})


class Runner:
    not_emitted: ClassVar[set[str]] = set()  # engine tensors "TensorRT" emits no debug tensor for
    opened: ClassVar[list[Runner]] = []

    def __init__(self, engine_bytes: bytes, mode: str, wanted: frozenset[str]) -> None:
        import onnx
        import onnxruntime as ort

        proto = onnx.load_from_string(engine_bytes)
        self.graph_outputs = [o.name for o in proto.graph.output]
        produced = {o for n in proto.graph.node for o in n.output}
        self.mode, self.wanted = mode, wanted
        self.names = list(dict.fromkeys([*self.graph_outputs, *(t for t in sorted(wanted) if t in produced)]))
        for name in self.names:
            if name not in self.graph_outputs:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
        self._session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        self.closed = False
        Runner.opened.append(self)

    def execute(self, feeds: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        values = dict(zip(self.names, self._session.run(self.names, dict(feeds)), strict=True))
        outputs = {n: v for n, v in values.items() if n in self.graph_outputs or self.mode == "outputs"}
        debug = {
            n: v
            for n, v in values.items()
            if n not in outputs and n in self.wanted and n not in self.not_emitted and self.mode != "outputs"
        }
        return outputs, debug

    def close(self) -> None:
        self.closed = True
        del self._session


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
