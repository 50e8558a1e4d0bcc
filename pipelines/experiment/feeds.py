"""Polygraphy-compatible sources: data-loader scripts and the JSON files ``polygraphy run --save-inputs`` writes.

Both yield *feed dicts* (``{input_name: array}``, one per sample), and an input takes its own name from each.

* ``source: {script: loader.py, function: load_data}`` is the contract of Polygraphy's
  ``--data-loader-script``: a function called without arguments that returns an iterable (a generator, a
  list) of feed dicts; ``loader.py:func`` is accepted too. It is user code (:mod:`.userscript`): imported
  only in the stage that reads the samples. Its key material is the script's bytes, the function's name
  and the bytes of every file listed in ``depends`` -- what else the script reads layerscope cannot see,
  which is why the dump also records a digest of the values fed and the compare stage refuses to compare
  a reference and a candidate that were fed different values.
* ``source: {file: inputs.json}``: Polygraphy's JSON (a list of feed dicts, or one feed dict), arrays
  encoded as base64 ``.npy`` bytes (``{"array": ..., "polygraphy_class": "ndarray"}``, or the legacy
  ``__polygraphy_encoded_ndarray`` marker). Decoded here without Polygraphy, never unpickled.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.experiment.userscript import ScriptRef, call, load_function
from layerscope.runner.errors import UsageError
from layerscope.runner.hashing import FileDigests

if TYPE_CHECKING:
    import numpy as np

    from layerscope.pipelines.experiment import InputSpec

TYPE_MARKER = "polygraphy_class"
LEGACY_MARKER = "__polygraphy_encoded_ndarray"


def script_ref(spec: InputSpec) -> ScriptRef:
    return ScriptRef(Path(spec.source["script"]), spec.source["function"])


def script_material(spec: InputSpec, digests: FileDigests) -> dict[str, Any]:
    ref = script_ref(spec)
    depends = [{"file": f, "sha256": digests(Path(f))} for f in spec.source.get("depends_files", [])]
    return {
        "script": ref.path.name,
        "function": ref.function,
        "script_sha256": digests(ref.path),
        **({"depends": [{"name": Path(d["file"]).name, "sha256": d["sha256"]} for d in depends]} if depends else {}),
    }


def _feed(feed: Any, spec: InputSpec, where: str) -> Any:
    if not isinstance(feed, Mapping):
        raise UsageError(f"{where} is a {type(feed).__name__}, not a mapping of input names to arrays")
    if spec.name not in feed:
        names = ", ".join(repr(str(k)) for k in feed) or "nothing"
        raise UsageError(f"{where} has no input {spec.name!r} (it has: {names})")
    return feed[spec.name]


@contextmanager
def script_reader(spec: InputSpec, samples: int) -> Iterator[Any]:
    """Run the loader (user code) and read its feed dicts in order."""
    from layerscope.pipelines.experiment.inputs import conform

    ref = script_ref(spec)
    fn = load_function(ref)
    produced = call(ref, fn, context=" when called")
    try:
        iterator = iter(produced)
    except TypeError:
        raise UsageError(
            f"{ref.label} returned a {type(produced).__name__}, not an iterable of feed dicts "
            "(a generator or a list of {input_name: array})"
        ) from None
    state = {"next": 0}

    def read(i: int) -> np.ndarray:
        if i != state["next"]:
            raise UsageError(f"{ref.label}: samples are read in order; sample {i} was asked after {state['next']}")
        try:
            feed = next(iterator)
        except StopIteration:
            raise UsageError(
                f"{ref.label} yielded {i} feed dict{'s' if i != 1 else ''}; the config asks for {samples} samples"
            ) from None
        except Exception as exc:
            from layerscope.pipelines.experiment.userscript import where

            raise UsageError(f"{ref.label} raised {where(exc, ref.path)} (sample {i})") from None
        state["next"] = i + 1
        where_ = f"{ref.label}, sample {i}"
        return conform(_feed(feed, spec, where_), spec, where_)

    try:
        yield read
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):  # a generator's failing cleanup must not hide the data it gave
                close()


# -- Polygraphy JSON -----------------------------------------------------------------------------------------
def _decode(obj: dict[str, Any]) -> Any:
    import numpy as np

    if obj.get(TYPE_MARKER) != "ndarray" and LEGACY_MARKER not in obj:
        return obj
    text = obj.get("array")
    if not isinstance(text, str):
        raise ValueError("an encoded array has no 'array' payload")
    try:
        data = base64.b64decode(text.encode(), validate=True)
    except ValueError:
        data = text.encode("latin-1")  # Polygraphy's oldest encoding
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded as archive:  # an .npz payload (older Polygraphy): its first array
        if not archive.files:
            raise ValueError("an encoded array archive holds no array")
        return archive[archive.files[0]]


def load_polygraphy_json(path: Path) -> list[Any]:
    """The feed dicts of a Polygraphy inputs file (a list of them, or one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_hook=_decode)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read Polygraphy inputs {path}: {exc}") from None
    return data if isinstance(data, list) else [data]


def probe_json(spec: InputSpec, samples: int) -> tuple[int, ...] | None:
    """The shape of one sample of a Polygraphy JSON source, after checking every sample the run reads."""
    read = json_reader(spec, samples)
    shape = spec.shape
    for i in range(samples):
        shape = shape or tuple(read(i).shape)
    return shape


def json_reader(spec: InputSpec, samples: int) -> Any:
    from layerscope.pipelines.experiment.inputs import conform

    path = Path(spec.source["file"])
    feeds = load_polygraphy_json(path)
    if len(feeds) < samples:
        raise UsageError(f"{path.name} holds {len(feeds)} feed dicts; the config asks for {samples} samples")

    def read(i: int) -> np.ndarray:
        where = f"{path.name}, sample {i}"
        return conform(_feed(feeds[i], spec, where), spec, where)

    return read
