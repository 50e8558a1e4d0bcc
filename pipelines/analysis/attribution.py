"""Error attribution: how much error a layer adds itself, fed the reference's exact inputs.

For each compared layer of a candidate run, the layer is cut out of the candidate's *built* graph — the
node itself plus the conversions lowering put around it (the Casts of an FP16 island border, the rounding
Casts of emulation, the QuantizeLinear/DequantizeLinear pairs of a quantized model, its dequantized weights)
— and run on the *reference* dump's values of its inputs. Its error against the reference output is the
layer's **local** error: what computing this one layer the candidate's way costs, including rounding or
quantizing its inputs and weights exactly as the built model does. The rest of the candidate's error at that
layer arrived from upstream (**inherited**); the report gives the local metrics and the share of the error
power that is inherited.

The cut graphs always run on ONNX Runtime: for another backend (TensorRT) the local errors are an estimate
of the same arithmetic on ONNX Runtime's kernels, and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerscope.pipelines.models.summary import ELEM_TYPES, ModelSummary

NOT_ATTRIBUTABLE = "not attributable"
_CONVERSIONS = {"Cast", "QuantizeLinear", "DequantizeLinear"}


@dataclass
class _Part:
    """A layer cut out of the lowered graph: its nodes (the graph's own, not copies), in graph order."""

    node: str
    nodes: list[Any]
    feeds: dict[str, tuple[str, int]]  # cut input -> (original tensor fed, onnx elem type)
    outputs: list[str]  # the lowered tensors read back, in the order of the layer's outputs
    initializers: list[str]


class LayerCutter:
    """Cuts single layers, with the conversions around them, out of a lowered graph."""

    def __init__(self, lowered: Any, summary: ModelSummary) -> None:
        import onnx

        self.model = lowered
        g = lowered.graph
        self.layers = {n.name for n in summary.nodes}  # nodes of the original model; the rest were inserted
        self.summary = summary
        self.by_name = {n.name: n for n in g.node}
        self.position = {n.name: i for i, n in enumerate(g.node)}
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.initializers = {i.name: i for i in g.initializer}
        self.consumers: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        typed = onnx.shape_inference.infer_shapes(lowered, strict_mode=False)
        self.dtypes = {
            vi.name: vi.type.tensor_type.elem_type
            for vi in [*typed.graph.value_info, *typed.graph.input, *typed.graph.output]
            if vi.type.HasField("tensor_type")
        }

    def _inserted(self, node: Any) -> bool:
        return node.op_type in _CONVERSIONS and node.name not in self.layers

    def _original_name(self, tensor: str) -> str | None:
        """The original model's tensor whose value ``tensor`` carries at a layer boundary."""
        node = self.producer.get(tensor)
        if node is None:
            return tensor  # a graph input
        if node.name not in self.layers:
            return None
        original = self.summary.node(node.name).outputs
        index = list(node.output).index(tensor)
        return original[index] if index < len(original) else None

    def cut(self, node_name: str, values: Mapping[str, str]) -> tuple[Any, dict[str, tuple[str, int]]] | None:
        """(model, {cut input: (original tensor fed to it, onnx elem type)}) for the layer, or None if it
        cannot be cut (subgraphs, an input that is not a layer output or graph input)."""
        part = self.part(node_name, values)
        return None if part is None else (self.model_of(part), part.feeds)

    def model_of(self, part: _Part) -> Any:
        """The cut layer as a model of its own."""
        from onnx import helper

        graph = helper.make_graph(
            part.nodes,
            f"layer_{part.node}",
            [helper.make_tensor_value_info(t, dtype, None) for t, (_o, dtype) in part.feeds.items()],
            [helper.make_tensor_value_info(t, self.dtypes.get(t, 1), None) for t in part.outputs],
            [self.initializers[i] for i in part.initializers],
        )
        one = helper.make_model(graph, opset_imports=list(self.model.opset_import))
        one.ir_version = self.model.ir_version
        return one

    def part(self, node_name: str, values: Mapping[str, str]) -> _Part | None:
        """The layer's nodes (in graph order), feeds, outputs and initializers, or None if it cannot be cut.
        Nothing is copied: a batch builds one model from many parts (:func:`_merged`)."""
        node = self.by_name.get(node_name)
        if node is None or any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            return None
        nodes: dict[str, Any] = {node.name: node}
        feeds: dict[str, tuple[str, int]] = {}
        todo = [i for i in node.input if i]
        while todo:
            t = todo.pop()
            if t in self.initializers or t in feeds:
                continue
            p = self.producer.get(t)
            if p is not None and (p.op_type == "Constant" or self._inserted(p)):
                if p.name not in nodes:
                    nodes[p.name] = p
                    todo.extend(i for i in p.input if i)
                continue
            original = self._original_name(t)
            if original is None or t not in self.dtypes:
                return None
            feeds[t] = (original, self.dtypes[t])
        outputs = []
        for out in [o for o in node.output if o]:
            target = values.get(out, out)
            path = self._forward(out, target)
            if path is None:
                return None
            for p in path:
                nodes.setdefault(p.name, p)
                for i in p.input:
                    if i and i not in self.initializers and i not in {o for n in nodes.values() for o in n.output}:
                        src = self.producer.get(i)
                        if src is not None and src.op_type == "Constant":
                            nodes.setdefault(src.name, src)
            outputs.append(target)
        used = {i for n in nodes.values() for i in n.input}
        inits = [i for i in used if i in self.initializers]
        order = sorted(nodes.values(), key=lambda n: self.position[n.name])  # the lowered graph is topologically sorted
        return _Part(node_name, order, feeds, outputs, inits)

    def _forward(self, start: str, target: str) -> list[Any] | None:
        """The inserted conversion nodes leading from a layer output to the tensor carrying its value."""
        if start == target:
            return []
        frontier: list[tuple[str, list[Any]]] = [(start, [])]
        seen = {start}
        while frontier:
            t, path = frontier.pop(0)
            for n in self.consumers.get(t, []):
                if not self._inserted(n):
                    continue
                for o in n.output:
                    if o == target:
                        return [*path, n]
                    if o and o not in seen:
                        seen.add(o)
                        frontier.append((o, [*path, n]))
        return None


# A batch of cut layers runs as one ONNX Runtime session: creating a session costs ~2 ms and a run call ~50 us
# however small the layer, which on 8,000 tiny layers was most of the stage. Bounded by layers and by the
# elements fed and produced per sample (the batch holds one sample of each).
BATCH_LAYERS = 256
BATCH_ELEMENTS = 1 << 24


@dataclass
class _Cut:
    """One layer cut out and ready to run: its nodes, what to feed it, which outputs to read."""

    node: str
    outs: list[str]  # original tensor names
    part: _Part
    feeds: dict[str, tuple[str, int]]  # cut input -> (original tensor fed, onnx elem type)
    names: list[str]  # the cut's output names, in the order of ``outs``
    elements: int  # per sample, fed and produced


def attribute(
    lowered_path: Path | None,
    summary: ModelSummary,
    tensor_map: Mapping[str, Mapping[str, Any]],
    tensors: list[str],
    pinned: set[str],
    reference: Any,
    *,
    metric_config: Callable[[str], Any],
    session_options: Callable[[], Any],
    progress: Callable[[], None] = lambda: None,
    threads: int = 1,
) -> dict[str, dict[str, Any]]:
    """Local metrics per tensor, or why a tensor is not attributable. ``reference`` is a DumpReader.

    Layers are cut one by one (a layer that cannot be cut is recorded with the reason), then run in batches:
    each batch is one model holding its layers side by side, disconnected, under prefixed names, so every
    layer computes exactly as it would alone; a batch ONNX Runtime cannot build falls back to one session per
    layer, so one odd layer costs only itself."""
    import onnx

    results: dict[str, dict[str, Any]] = {}
    if lowered_path is None:  # an FP32 candidate: every layer computes exactly as the reference
        return {t: {"status": "fp32"} for t in tensors}
    cutter = LayerCutter(onnx.load(str(lowered_path)), summary)
    # Each dumped tensor's per-sample shape, from the dump's listing (one pass, no dataset opened per tensor).
    dumped = {t.onnx_name: t.shape for t in reference.tensors()}
    graph_inputs = set(reference.input_names())
    producer = summary.producer_of()
    by_node: dict[str, list[str]] = {}
    for t in tensors:
        if t not in producer:
            results[t] = {"status": NOT_ATTRIBUTABLE, "why": "not produced by a node"}
        else:
            by_node.setdefault(producer[t].name, []).append(t)
    batch: list[_Cut] = []
    elements = 0
    # Results in the order they are known (attribution.json keeps it), a batch's in the slot it was formed in.
    slots: list[dict[str, dict[str, Any]]] = []
    waiting: tuple[list[_Cut], Future[Any] | None, int] | None = None

    def finish(batch: list[_Cut], prepared: Future[Any] | None, slot: int) -> None:
        slots[slot] = _run_batch(
            batch, cutter, reference, dumped, metric_config, session_options, threads, progress, prepared
        )

    # The next batch's session is made in a worker thread while this one runs (ONNX Runtime releases the GIL
    # while it builds a session, ~0.5 ms per layer: on thousands of tiny layers, the largest part left).
    with ThreadPoolExecutor(1, thread_name_prefix="attribution-session") as pool:

        def flush(batch: list[_Cut]) -> None:
            nonlocal waiting
            prepared = pool.submit(_merged_session, batch, cutter, session_options) if len(batch) > 1 else None
            if waiting is not None:
                finish(*waiting)
            slots.append({})
            waiting = (batch, prepared, len(slots) - 1)

        for node_name, outs in by_node.items():
            if node_name in pinned:
                slots.append({t: {"status": "pinned"} for t in outs})
                progress()
                continue
            try:
                cut = _prepare_layer(node_name, outs, cutter, summary, tensor_map, dumped, graph_inputs, reference)
            except (MemoryError, OSError):
                raise  # the machine, not the layer: the stage fails and is not cached
            except Exception as exc:  # an optional analysis: one layer that cannot be attributed costs nothing else
                cut = _unattributable(outs, f"attribution failed: {type(exc).__name__}: {str(exc).strip()[:200]}")
            if isinstance(cut, dict):
                slots.append(cut)
                progress()
                continue
            if batch and (len(batch) >= BATCH_LAYERS or elements + cut.elements > BATCH_ELEMENTS):
                flush(batch)
                batch, elements = [], 0
            batch.append(cut)
            elements += cut.elements
        if batch:
            flush(batch)
        if waiting is not None:
            finish(*waiting)
    for slot in slots:
        results.update(slot)
    return results


def _unattributable(outs: list[str], why: str) -> dict[str, dict[str, Any]]:
    return {t: {"status": NOT_ATTRIBUTABLE, "why": why} for t in outs}


def _prepare_layer(
    node_name: str,
    outs: list[str],
    cutter: LayerCutter,
    summary: ModelSummary,
    tensor_map: Mapping[str, Mapping[str, Any]],
    dumped: Mapping[str, tuple[int, ...]],
    graph_inputs: set[str],
    reference: Any,
) -> _Cut | dict[str, dict[str, Any]]:
    """The layer cut out with what to feed it, or (per tensor) why it cannot be attributed."""
    import math

    node = summary.node(node_name)
    if node.subgraph:
        why = f"it holds a subgraph ({node.op_type}): its values inside cannot be observed or cut out"
        return _unattributable(outs, why)
    low = cutter.by_name.get(node_name)
    values = {} if low is None else {
        low.output[k]: str(tensor_map[o]["name"]) for k, o in enumerate(node.outputs) if o in tensor_map
    }  # fmt: skip
    part = cutter.part(node_name, values)
    missing = [] if part is None else [o for o, _ in part.feeds.values() if o not in dumped and o not in graph_inputs]
    if part is None or missing:
        why = f"its input {missing[0]!r} was not dumped" if missing else "it cannot be cut out of the graph"
        return _unattributable(outs, why)
    elements = 0
    for original, _ in part.feeds.values():
        shape = dumped[original] if original in dumped else reference.dataset(original, "inputs").shape[1:]
        elements += math.prod(shape)
    elements += sum(math.prod(dumped[t]) for t in outs if t in dumped)
    return _Cut(node_name, outs, part, part.feeds, [str(tensor_map[t]["name"]) for t in outs], elements)


def _merged(batch: list[_Cut], cutter: LayerCutter) -> tuple[Any, list[dict[str, str]]]:
    """One model holding the batch's cut layers side by side, each member's names prefixed; and per member,
    its names in the merged model. Built in place: each node and initializer is copied once, into the model."""
    from onnx import ModelProto, helper

    model = ModelProto(ir_version=cutter.model.ir_version, opset_import=list(cutter.model.opset_import))
    graph = model.graph
    graph.name = "attribution_batch"
    renames: list[dict[str, str]] = []
    for k, cut in enumerate(batch):
        part, prefix = cut.part, f"b{k}/"
        rename: dict[str, str] = {}

        def new(t: str, rename: dict[str, str] = rename, prefix: str = prefix) -> str:
            if not t:
                return t
            name = rename.get(t)
            if name is None:
                name = rename[t] = prefix + t
            return name

        for n in part.nodes:
            m = graph.node.add()
            m.CopyFrom(n)
            m.name = prefix + n.name
            m.input[:] = [new(t) for t in n.input]
            m.output[:] = [new(t) for t in n.output]
        for t, (_o, dtype) in part.feeds.items():
            graph.input.append(helper.make_tensor_value_info(new(t), dtype, None))
        for t in part.outputs:
            graph.output.append(helper.make_tensor_value_info(new(t), cutter.dtypes.get(t, 1), None))
        for name in part.initializers:
            init = graph.initializer.add()
            init.CopyFrom(cutter.initializers[name])
            init.name = new(name)
        renames.append(rename)
    return model, renames


def _session_of(model: Any, session_options: Callable[[], Any]) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(
        model.SerializeToString(), _quiet(session_options()), providers=["CPUExecutionProvider"]
    )


def _merged_session(
    batch: list[_Cut], cutter: LayerCutter, session_options: Callable[[], Any]
) -> tuple[Any, list[tuple[_Cut, dict[str, str]]]]:
    """The session of a batch's merged model, and its members with their names in it."""
    model, renames = _merged(batch, cutter)
    return _session_of(model, session_options), [(cut, renames[k]) for k, cut in enumerate(batch)]


def _run_batch(
    batch: list[_Cut],
    cutter: LayerCutter,
    reference: Any,
    dumped: Mapping[str, Any],
    metric_config: Callable[[str], Any],
    session_options: Callable[[], Any],
    threads: int,
    progress: Callable[[], None],
    prepared: Future[Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The batch's results; ``prepared`` is its merged session being made (:func:`_merged_session`), if it was
    started already."""
    if len(batch) > 1:
        try:
            session, members = (
                prepared.result() if prepared is not None else _merged_session(batch, cutter, session_options)
            )
            merged = _run(session, members, reference, dumped, metric_config, threads)
        except (MemoryError, OSError):
            raise  # the machine or the dump, not a layer
        except Exception:  # some layer of the batch does not run: find which, one session per layer
            pass
        else:
            for _ in batch:
                progress()
            return merged
    results: dict[str, dict[str, Any]] = {}
    for cut in batch:
        progress()
        try:
            session = _session_of(cutter.model_of(cut.part), session_options)
        except (MemoryError, OSError):
            raise
        except Exception as exc:
            results.update(_unattributable(cut.outs, f"ONNX Runtime cannot run it alone: {str(exc).strip()[:200]}"))
            continue
        try:
            results.update(_run(session, [(cut, {})], reference, dumped, metric_config, threads))
        except (MemoryError, OSError):
            raise
        except Exception as exc:  # an optional analysis: one layer that cannot be attributed costs nothing else
            why = f"attribution failed: {type(exc).__name__}: {str(exc).strip()[:200]}"
            results.update(_unattributable(cut.outs, why))
    return results


def _run(
    session: Any,
    members: list[tuple[_Cut, dict[str, str]]],
    reference: Any,
    dumped: Mapping[str, Any],
    metric_config: Callable[[str], Any],
    threads: int,
) -> dict[str, dict[str, Any]]:
    """Run cut layers (one session, each member's names renamed as given) over every sample of the reference."""
    import math

    import numpy as np

    from layerscope.pipelines.lowering.formats import numpy_dtype
    from layerscope.pipelines.metrics.batch import batchable
    from layerscope.pipelines.metrics.stats import TensorStats

    stats = {t: TensorStats(metric_config(t), threads=threads) for cut, _ in members for t in cut.outs}
    overflowed = {cut.node: 0 for cut, _ in members}
    fetch = [
        (cut, t, rename.get(name, name)) for cut, rename in members for t, name in zip(cut.outs, cut.names, strict=True)
    ]
    # Small tensors keep their samples for one kernel call over all of them at the end (metrics.batch.many), up
    # to PENDING_ELEMENTS; the others are accumulated sample by sample. A tensor is never split between the two:
    # its statistics come from one computation over all its samples (partial sums merged would add in another
    # order than one update per sample does, and attribution.json would change in the last bits).
    pending: dict[str, tuple[list[Any], list[Any]]] = {}
    budget = PENDING_ELEMENTS
    for _cut, t, _name in fetch:
        size = math.prod(dumped[t]) * reference.samples if t in dumped else 0
        if size and batchable(size // reference.samples) and size <= budget:
            pending[t] = ([], [])
            budget -= size
    dtypes: dict[int, Any] = {}
    # A small tensor is read with all its samples at once (the reader's read_samples): on thousands of tiny
    # layers, reading one sample at a time through h5py cost more than the data.
    whole: dict[str, Any] = {}
    for i in range(reference.samples):
        # One read per tensor and sample: a layer's reference output is the next layer's input in the same batch.
        values_of: dict[tuple[str, str], Any] = {}

        def read(name: str, group: str, values_of: dict[tuple[str, str], Any] = values_of, i: int = i) -> Any:
            value = values_of.get((group, name))
            if value is None:
                if group == "tensors" and name in dumped and math.prod(dumped[name]) <= SMALL_READ:
                    samples = whole.get(name)
                    if samples is None:
                        samples = whole[name] = reference.read_samples(name)
                    value = samples[i, ...]  # an array even for a 0-d tensor, as reference.read gives
                else:
                    value = reference.read(name, i, group=group)
                values_of[(group, name)] = value
            return value

        feed = {}
        rounded: dict[tuple[str, int], tuple[Any, int]] = {}
        for cut, rename in members:
            for cut_input, (original, dtype) in cut.feeds.items():
                value = read(original, "tensors" if original in dumped else "inputs")
                target = dtypes.get(dtype)
                if target is None:
                    target = dtypes[dtype] = np.dtype(numpy_dtype(ELEM_TYPES[dtype]))
                fed = value
                if value.dtype != target:
                    # A reference tensor feeding several layers of the batch is rounded once.
                    key = (original, dtype)
                    done = rounded.get(key)
                    if done is None:
                        done = rounded[key] = rounding(value, target, threads)
                    fed = done[0]
                    overflowed[cut.node] += done[1]
                feed[rename.get(cut_input, cut_input)] = fed
        values = session.run([name for _, _, name in fetch], feed)
        for (_cut, t, _name), value in zip(fetch, values, strict=True):
            if t in pending:
                pending[t][0].append(read(t, "tensors"))
                pending[t][1].append(value)
            else:
                stats[t].update(read(t, "tensors"), value)
    if pending:
        stats.update(_many(pending, stats, threads))
    out: dict[str, dict[str, Any]] = {}
    for cut, _ in members:
        for t in cut.outs:
            local = stats[t].result(histograms=False)  # attribution.json keeps no histograms
            out[t] = {"status": "ok", "local": local}
            if overflowed[cut.node]:
                out[t]["note"] = f"{overflowed[cut.node]} reference input values overflow the input's format"
    return out


def rounding(value: Any, target: Any, threads: int = 1) -> tuple[Any, int]:
    """A reference value rounded into a cut input's format, as the candidate's own Cast would round it, and how
    many of its finite values overflowed to Inf there (counted, never warned about).

    FP32 to FP16, the conversion of every FP16 candidate, runs on ONNX Runtime's Cast for large tensors: numpy
    converts in scalar code (34 ms for 2.6 M floats against 7 ms); both round to nearest even, bit for bit (a
    test holds them equal on every kind of value). The overflow count is exact: it is computed only where some
    value lies beyond the format's largest finite value (or is not finite), which no value within it can reach.
    """
    import numpy as np

    if value.dtype == np.float32 and target == np.float16 and value.size >= ORT_CAST_ELEMENTS:
        fed = _cast_session(threads).run(None, {"x": value})[0]
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            fed = value.astype(target)
    if not (fed.dtype.kind == "f" and value.dtype.kind == "f" and fed.dtype.itemsize < value.dtype.itemsize):
        return fed, 0
    if value.size == 0:
        return fed, 0
    largest = float(np.finfo(fed.dtype).max)
    high, low = float(value.max()), float(value.min())
    if -largest <= low and high <= largest:  # False for a NaN (max/min propagate it) or an Inf: then count
        return fed, 0
    return fed, int(np.count_nonzero(np.isinf(fed) & np.isfinite(value)))


# Below this, numpy's conversion costs less than an ONNX Runtime call.
ORT_CAST_ELEMENTS = 1 << 14
_CAST_SESSIONS: dict[int, Any] = {}


def _cast_session(threads: int) -> Any:
    """An ONNX Runtime session holding one Cast from FP32 to FP16 (made once per process and thread count)."""
    session = _CAST_SESSIONS.get(threads)
    if session is None:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)],
            "round_fp16",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7  # what opset 13 needs, not the newest onnx writes (which ONNX Runtime may not read)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options = _quiet(options)
        session = _CAST_SESSIONS[threads] = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    return session


def _quiet(options: Any) -> Any:
    """Session options whose worker threads sleep between runs instead of spinning: attribution alternates
    short ONNX Runtime runs with the metrics kernel's own threads, which spinning workers would slow down.
    Scheduling only; what the session computes is the same."""
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


# Per-sample elements up to which a tensor's samples are read at once.
SMALL_READ = 1 << 14

# Reference values of all samples held for one batched metrics call, at most (one side; as compare's batches).
PENDING_ELEMENTS = 1 << 21


def _many(pending: Mapping[str, tuple[list[Any], list[Any]]], stats: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The statistics of small tensors over all their samples (per tensor: the reference's, the cut layer's),
    from one metrics kernel call: the same as one ``TensorStats.update`` per tensor and sample, bit for bit."""
    import numpy as np

    from layerscope.pipelines.metrics.batch import many

    names = list(pending)
    items = [(np.stack(pending[t][0]), np.stack(pending[t][1]), stats[t].config) for t in names]
    return dict(zip(names, many(items, threads=threads), strict=True))


def inherited_share(total: Mapping[str, Any], local: Mapping[str, Any]) -> float | None:
    """Share of the candidate's error power at a layer that arrived from upstream (0: all local, 1: all inherited).

    Undefined (None) when either error power is undefined (no finite pairs) or infinite (a value became NaN/Inf):
    a ratio of infinities says nothing about where the error came from.
    """
    import math

    from layerscope.runner.jsonio import as_float

    noise_total = as_float(total["rmse"]) ** 2
    noise_local = as_float(local["rmse"]) ** 2
    if not (math.isfinite(noise_total) and math.isfinite(noise_local)):
        return None
    if noise_total == 0:
        return 0.0
    return max(0.0, min(1.0, 1.0 - noise_local / noise_total))
