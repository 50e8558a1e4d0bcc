"""dump[run]: run every sample through the built model and stream the selected tensors to HDF5.

Key: the build's key, the selected tensors, the input digests, the sample count, the dump options and
what the backend says changes values at run time (e.g. the CPU, whose kernels set the summation order).
Memory is bounded by two samples' tensors: a sample is written while the next one runs. Tensors the
backend cannot observe (fused away in a TensorRT engine) are not written; the dump names them with the
reason (attribute ``not_observable``), and carries the backend's precision audit when it made one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from layerscope._version import __version__
from layerscope.pipelines import backends
from layerscope.pipelines.backends.base import code_modules, worker_resources
from layerscope.pipelines.experiment.inputs import input_material, sample_reader
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError
from layerscope.runner.graph import Stage, StageContext

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment, RunSpec

DUMP_FILE = "dump.h5"


def stage_id(run: str) -> str:
    return f"dump[{run}]"


def make(exp: Experiment, run: RunSpec, build_id: str) -> Stage:
    backend = backends.get(run.backend)
    inputs = {spec.name: input_material(spec, exp.cache.digests) for spec in exp.inputs}

    def action(ctx: StageContext) -> None:
        lowering = json.loads(ctx.inputs["build"].file("lowering.json").read_text())
        tmap = lowering["tensors"]
        missing = [t for t in exp.tensors if t not in tmap]
        if missing:
            raise StageError(f"the {run.name} build has no value for {', '.join(missing[:5])}")
        lowered = [tmap[t]["name"] for t in exp.tensors]
        # Quantized runs: also the value before each Q/DQ pair (what the layer computed, before quantization).
        prequant = {
            t: tmap[t]["prequant"] for t in exp.tensors if tmap[t].get("prequant", tmap[t]["name"]) != tmap[t]["name"]
        }
        requested = list(dict.fromkeys([*lowered, *prequant.values()]))
        session = backend.open(ctx.inputs["build"].path, exp.model, run, requested, ctx.threads)
        from layerscope.pipelines.dumps import DumpWriter

        ctx.progress.start(exp.samples, f"dump {run.name}")
        try:
            with contextlib.ExitStack() as stack:
                readers = {s.name: stack.enter_context(sample_reader(s, exp.samples)) for s in exp.inputs}
                feeds = {name: read(0) for name, read in readers.items()}
                # The first sample runs before the file is made: a runtime may only learn then which requested
                # tensors it has no value for (TensorRT emits unfused debug tensors as the engine runs).
                values = session.run(feeds)
                hidden = {
                    t: session.unobservable[tmap[t]["name"]]
                    for t in exp.tensors
                    if tmap[t]["name"] in session.unobservable
                }
                observed = [(t, low) for t, low in zip(exp.tensors, lowered, strict=True) if t not in hidden]
                prequant = {t: pre for t, pre in prequant.items() if pre not in session.unobservable}
                attrs = {
                    "run": run.name,
                    "backend": run.backend,
                    "precision": run.precision,
                    "execution": lowering["execution"],
                    "model_digest": exp.model.digest,
                    "inputs": inputs,
                    "tool_version": __version__,
                    "versions": backend.versions(),
                    "device": backend.device(),
                    "notes": lowering.get("notes", []),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **({"not_observable": hidden} if hidden else {}),
                    **({"audit": lowering["audit"]} if lowering.get("audit") else {}),
                }
                writer = stack.enter_context(
                    DumpWriter(
                        ctx.out_dir / DUMP_FILE,
                        samples=exp.samples,
                        attrs=attrs,
                        compression=str(exp.dump["compression"]),
                        gzip_level=int(exp.dump["gzip_level"]),
                    )
                )
                for t, _ in observed:
                    m = tmap[t]
                    writer.describe(
                        t,
                        {
                            "node": m["node"],
                            "op_type": m["op_type"],
                            "index": m["index"],
                            "dtype_executed": m["dtype"],
                            "execution": m["execution"],
                            "lowered_name": m["name"],
                            **({"weights": json.dumps(m["weights"])} if "weights" in m else {}),
                            **({"quant": json.dumps(m["quant"])} if "quant" in m else {}),
                        },
                    )

                fed = hashlib.sha256()  # what the model was fed: compare refuses runs fed different values

                def store(i: int, feeds: dict[str, Any], values: dict[str, Any]) -> None:
                    for t, low in observed:
                        writer.write(i, t, values[low])
                    for t, pre in prequant.items():
                        writer.write_prequant(i, t, values[pre])
                    for name, value in feeds.items():
                        writer.write_input(i, name, value)
                        fed.update(f"{i}:{name}:{value.dtype}:{value.shape}".encode())
                        fed.update(value.tobytes())
                    ctx.progress.advance()

                # Sample i is written while sample i+1 runs (the runtime releases the GIL): at most two
                # samples' tensors are in memory at once.
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dump-writer") as pool:
                    pending: Future[None] = pool.submit(store, 0, feeds, values)
                    del values
                    for i in range(1, exp.samples):
                        feeds = {name: read(i) for name, read in readers.items()}
                        values = session.run(feeds)
                        pending.result()
                        pending = pool.submit(store, i, feeds, values)
                        del values
                    pending.result()
                writer.set_attr("inputs_fed_sha256", fed.hexdigest())
        finally:
            session.close()
        ctx.result.update({"execution": lowering["execution"], "tensors": len(observed), "samples": exp.samples})

    return Stage(
        id=stage_id(run.name),
        kind="dump",
        params={
            "tensors": list(exp.tensors),
            "inputs": inputs,
            "samples": exp.samples,
            "dump": dict(exp.dump),
            "backend_dump": backend.dump_material(run),
        },
        action=action,
        # The backend is chosen at run time (the registry imports it by name): its module's closure joins ours.
        version=code_version(__name__, *code_modules(backend)),
        deps={"build": build_id},
        description=f"dump {run.name}",
        imports=("numpy", "onnx", "onnxruntime", "h5py"),
        resources=worker_resources(run.backend),
    )
