"""report.json's packed layer table (schema version 3): a large comparison's layers as rows of values, each
value stated once where every layer has the same one, and nothing lost.

At thousands of layers the document was mostly keys (a layer carried ~60 of them), the same limits on every
layer and attribution's local metrics repeating the reference-only fields of the layer's own metrics. A
comparison with at least :data:`PACK_AT` layers is written as::

    "layers": {"packed": 1, "paths": [["tensor"], ["metrics", "cosine"], ...],
               "defaults": [[path, value], ...], "shapes": [[path, ...], ...], "rows": [[shape, value, ...], ...]}

A layer is flattened into (key path, value) pairs (a value that is not a non-empty object is a leaf: numbers,
strings, null, lists, ``{}``). ``shapes`` lists the key paths a layer has, in its own key order (so the layer
comes back exactly, key order included); a row is its shape's index, then the values of the shape's paths that
have no default, in order. A path whose value is the same on every layer that has it is stated once in
``defaults`` (the limits, the dtypes, counts that are zero everywhere). In attribution's local metrics,
``elements``, ``ref_nan``, ``ref_inf`` and ``range`` are described by the reference alone and so equal the
layer's own metrics: they are left out where equal (``local_from_metrics``) and copied back on reading.

Smaller comparisons keep the plain list of layer objects. Every reader in layerscope reads a report through
:func:`unpack_report` (``read.read_report``, the run's own outputs), so all of them see the same document
either way; ``layerscope report DIR --format json`` prints the unpacked document for other tools.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from layerscope.runner.jsonio import as_float

PACK_AT = 1000  # layers in a comparison from which report.json packs them (smaller reports stay plain)
LOCAL_FROM_METRICS = ("elements", "ref_nan", "ref_inf", "range")  # reference-only fields of local metrics

HISTOGRAMS_FILE = "report.histograms.json"  # beside report.json: the histograms of the layers it does not show
HISTOGRAMS_SCHEMA = "layerscope-report-histograms"
SHOWN_HISTOGRAMS = 20  # per packed comparison, the worst layers by deviation ratio keep theirs in report.json

Path_ = tuple[str, ...]


def _copy(value: Any) -> Any:
    """A JSON value copied (lists and objects), so that no two layers share one."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality that tells 1, 1.0 and true apart (Python's == does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


class _Paths:
    """Key paths by id, found through a trie of keys: a path's tuple is built once, not once per layer."""

    def __init__(self) -> None:
        self.paths: list[Path_] = []
        self._leaves: dict[int, dict[str, int]] = {}  # node -> key -> path id (a value there)
        self._nodes: dict[int, dict[str, int]] = {}  # node -> key -> child node (an object there)
        self._prefix: list[Path_] = [()]

    def flatten(self, d: dict[str, Any], ids: list[int], values: list[Any], node: int = 0) -> None:
        leaves = self._leaves.setdefault(node, {})
        for k, v in d.items():
            if type(v) is dict and v:
                children = self._nodes.setdefault(node, {})
                child = children.get(k)
                if child is None:
                    child = children[k] = len(self._prefix)
                    self._prefix.append((*self._prefix[node], k))
                self.flatten(v, ids, values, child)
            else:
                i = leaves.get(k)
                if i is None:
                    i = leaves[k] = len(self.paths)
                    self.paths.append((*self._prefix[node], k))
                ids.append(i)
                values.append(v)


def _drop_local_repeats(layer: dict[str, Any]) -> dict[str, Any]:
    local = layer.get("attribution", {}).get("local")
    metrics = layer.get("metrics")
    if not isinstance(local, dict) or not isinstance(metrics, dict):
        return layer
    kept = {k: v for k, v in local.items() if not (k in LOCAL_FROM_METRICS and k in metrics and _same(v, metrics[k]))}
    if len(kept) == len(local):
        return layer
    return {**layer, "attribution": {**layer["attribution"], "local": kept}}


def pack_layers(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The packed table of a comparison's layers (see the module doc)."""
    paths = _Paths()
    first: list[Any] = []
    varies: list[bool] = []
    shaped: list[tuple[tuple[int, ...], list[Any]]] = []
    for layer in layers:
        ids: list[int] = []
        values: list[Any] = []
        paths.flatten(_drop_local_repeats(layer), ids, values)
        for i, value in zip(ids, values, strict=True):
            if i == len(first):  # ids are handed out in order: this path is new
                first.append(value)
                varies.append(False)
            elif not varies[i] and not _same(first[i], value):
                varies[i] = True
        shaped.append((tuple(ids), values))
    fixed = [not v and len(layers) > 1 for v in varies]
    shapes: dict[tuple[int, ...], int] = {}
    rows = []
    for shape, values in shaped:
        s = shapes.setdefault(shape, len(shapes))
        rows.append([s, *(value for i, value in zip(shape, values, strict=True) if not fixed[i])])
    return {
        "packed": 1,
        "paths": [list(p) for p in paths.paths],
        "defaults": [[i, first[i]] for i, f in enumerate(fixed) if f],
        "local_from_metrics": list(LOCAL_FROM_METRICS),
        "shapes": [list(s) for s in shapes],
        "rows": rows,
    }


def unpack_layers(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The layers of a packed table, as they were before :func:`pack_layers`."""
    paths = [tuple(p) for p in table["paths"]]
    if not all(p and all(type(k) is str for k in p) for p in paths):
        raise ValueError("a key path of a packed layer table is not a list of strings")
    defaults = {int(i): v for i, v in table["defaults"]}
    from_metrics = tuple(table.get("local_from_metrics", ()))
    builders = [_builder(paths, shape, defaults, from_metrics) for shape in table["shapes"]]
    layers = []
    for row in table["rows"]:
        build, width = builders[row[0]]
        if len(row) != width:
            raise ValueError(f"a packed layer row has {len(row) - 1} values, its shape {width - 1}")
        layers.append(build(row, defaults, _copy))
    return layers


def _builder(
    paths: list[Path_], shape: list[int], defaults: dict[int, Any], from_metrics: tuple[str, ...]
) -> tuple[Any, int]:
    """A function (row, defaults, copy) -> layer for one shape, and the length of its rows.

    Compiled once per shape from a literal of the layer's nested objects: building thousands of layers key by
    key was seconds of every run that renders a large report. Keys enter the code only as ``repr`` of strings,
    values only as ``r[i]`` / ``D[i]``, so a report's content is never code.
    """
    tree: dict[str, Any] = {}
    width = 1
    for i in shape:
        *parents, key = paths[i]
        node = tree
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ValueError(f"a packed layer table has both a value and keys under {p!r}")
            node = child
        if key in node:
            raise ValueError(f"a packed layer shape repeats the key path {list(paths[i])}")
        if i in defaults:
            node[key] = f"_copy(D[{i}])" if isinstance(defaults[i], (list, dict)) else f"D[{i}]"
        else:
            node[key] = f"r[{width}]"
            width += 1
    metrics = tree.get("metrics")
    local = tree.get("attribution", {}).get("local") if isinstance(tree.get("attribution"), dict) else None
    if isinstance(metrics, dict) and isinstance(local, dict):
        missing = [k for k in from_metrics if k not in local and k in metrics]
        if missing:  # back in the order of the layer's own metrics, the order layerscope writes local metrics in
            order = [k for k in metrics if k in local or k in missing] + [k for k in local if k not in metrics]
            restored = {k: f"_copy(m[{k!r}])" if k in missing else local[k] for k in order}
            tree["attribution"]["local"] = restored
        tree["metrics"] = "m"
        code = f"def build(r, D, _copy):\n m = {_literal(metrics)}\n return {_literal(tree)}\n"
    else:
        code = f"def build(r, D, _copy):\n return {_literal(tree)}\n"
    scope: dict[str, Any] = {}
    exec(compile(code, "<packed layer shape>", "exec"), scope)
    return scope["build"], width


def _literal(node: dict[str, Any] | str) -> str:
    if isinstance(node, str):
        return node
    return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in node.items()) + "}"


def is_packed(layers: Any) -> bool:
    return isinstance(layers, dict) and layers.get("packed") == 1


def _shown(comparison: dict[str, Any]) -> set[str]:
    """Tensors whose histograms a packed comparison keeps in report.json: what the report shows (the root
    causes, the first failing layer, and the worst layers by deviation ratio, whose histograms the HTML draws)."""
    layers = comparison["layers"]
    shown = {c["tensor"] for c in comparison.get("root_causes", [])}
    if comparison.get("first_failing_tensor"):
        shown.add(comparison["first_failing_tensor"])
    ranked = sorted(layers, key=lambda x: -_ratio(x["metrics"].get("deviation_ratio")))
    return shown | {x["tensor"] for x in ranked[:SHOWN_HISTOGRAMS]}


def _ratio(value: Any) -> float:
    v = as_float(value)
    return -1.0 if v != v else v


def pack_report(doc: dict[str, Any], encode: Any) -> tuple[dict[str, Any], str | None]:
    """``doc`` as report.json is written, and the text of :data:`HISTOGRAMS_FILE` (None: no file).

    Comparisons of at least :data:`PACK_AT` layers are packed, and their layers' histograms, except those of
    the layers the report shows, go to the histograms file; report.json names it with its SHA-256, so a reader
    never merges the file of another run. ``encode`` turns a document into text (``jsonio.dumps``, called
    with ``compact=True``).
    """
    comparisons = doc.get("comparisons", [])
    if not any(len(c["layers"]) >= PACK_AT for c in comparisons):
        return doc, None
    moved: list[dict[str, Any]] = []
    packed = []
    for c in comparisons:
        if len(c["layers"]) < PACK_AT:
            packed.append(c)
            continue
        shown = _shown(c)
        kept, elsewhere = [], {}
        for layer in c["layers"]:
            hists = layer["metrics"].get("histograms")
            if hists is not None and layer["tensor"] not in shown:
                elsewhere[layer["tensor"]] = hists
                layer = {**layer, "metrics": {k: v for k, v in layer["metrics"].items() if k != "histograms"}}
            kept.append(layer)
        moved.append({"candidate": c["candidate"], "histograms": elsewhere})
        packed.append({**c, "layers": pack_layers(kept)})
    side = encode({"schema": HISTOGRAMS_SCHEMA, "schema_version": 1, "comparisons": moved}, compact=True)
    count = sum(len(m["histograms"]) for m in moved)
    record = {"file": HISTOGRAMS_FILE, "sha256": hashlib.sha256(side.encode()).hexdigest(), "layers": count}
    return {**doc, "comparisons": packed, "histograms_file": record}, side


def unpack_report(doc: dict[str, Any], folder: Path | None = None) -> dict[str, Any]:
    """The document every reader sees (in place; ``doc`` is returned): packed layer tables unpacked, and the
    histograms from :data:`HISTOGRAMS_FILE` in ``folder`` put back into their layers when the file is there and
    is the one report.json names (then ``histograms_file`` goes; else it stays, saying where they are)."""
    found = doc.get("comparisons")
    comparisons: list[Any] = found if isinstance(found, list) else []
    for c in comparisons:
        if isinstance(c, dict) and is_packed(c.get("layers")):
            c["layers"] = unpack_layers(c["layers"])
    record = doc.get("histograms_file")
    if folder is not None and isinstance(record, dict):
        side = read_histograms(folder / HISTOGRAMS_FILE, record.get("sha256"))
        if side is not None:
            by_candidate = {m["candidate"]: m["histograms"] for m in side["comparisons"]}
            for c in comparisons:
                for layer in c["layers"]:
                    hists = by_candidate.get(c["candidate"], {}).get(layer["tensor"])
                    if hists is not None:
                        layer["metrics"] = _with_histograms(layer["metrics"], hists)
            del doc["histograms_file"]
    return doc


def _with_histograms(metrics: dict[str, Any], hists: Any) -> dict[str, Any]:
    """``metrics`` with its histograms where layerscope writes them: after ``range``."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        out[k] = v
        if k == "range":
            out["histograms"] = hists
    out.setdefault("histograms", hists)
    return out


def read_histograms(path: Path, sha256: Any) -> dict[str, Any] | None:
    """The histograms file at ``path`` when it is there and its SHA-256 is ``sha256`` (else None: another run
    wrote it, or it is gone; the report reads without those histograms)."""
    import json

    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    doc: dict[str, Any] = json.loads(data)
    return doc
