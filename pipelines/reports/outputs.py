"""What a run writes into its output directory: report.json with how this invocation ran, the report formats
the config asks for (report.md, report.html), links to the HDF5 dumps and the TensorRT calibration cache.

Every file is written atomically, so a reader (a CI job, a browser, a second run) never sees a part.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.reports.packing import HISTOGRAMS_FILE, unpack_report
from layerscope.runner.errors import UsageError
from layerscope.runner.files import atomic_write
from layerscope.runner.jsonio import INDENT_UP_TO, encode
from layerscope.runner.resources import disk_full, is_disk_full

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment
    from layerscope.runner.cache import Cache, Entry
    from layerscope.runner.execute import Outcome
    from layerscope.runner.graph import Plan


def _cached_report(exp: Experiment, entry: Entry) -> dict[str, Any]:
    """report.json as the report stage wrote it (packed where large), with the config's path as this
    invocation gave it.

    The path is provenance of the invocation, not of the cached report: a path is in no cache key, so running
    the same config by another path reuses everything.
    """
    return _with_config(json.loads(entry.file("report.json").read_text()), exp)


def _with_config(report: dict[str, Any], exp: Experiment) -> dict[str, Any]:
    report["experiment"] = {"config": exp.source, **report["experiment"]}
    return report


def _spliced(cached: str, report: dict[str, Any], *, indent: bool = False) -> str | None:
    """The text :func:`encode` gives ``report`` (compact, or with one-space indents where ``indent``), made
    from the text the report stage wrote in that layout (``cached``, which ``report`` was loaded from before
    :func:`_with_config` and ``execution`` were added) by inserting only what was added: re-encoding a report
    of 8,000 layers cost 0.3 s of a warm rerun, and Python encodes an indented document without its C encoder
    (a quarter of the demo's warm rerun). None where the text is not laid out as expected (the caller encodes
    the document)."""
    keys = list(report)
    if keys[:4] != ["schema", "schema_version", "verdict", "experiment"] or keys[-1] != "execution":
        return None
    if "execution" in keys[:-1] or list(report["experiment"])[:1] != ["config"]:
        return None

    def text(value: Any, level: int) -> str:  # ``value`` as it reads nested ``level`` objects deep
        if not indent:
            return json.dumps(value, allow_nan=False, separators=(",", ":"))
        return json.dumps(value, allow_nan=False, indent=1).replace("\n", "\n" + " " * level)  # no raw \n in JSON

    first = text({k: report[k] for k in keys[:3]}, 0)
    if indent:  # json.dumps(indent=1): a member per line, ": " after keys, one more space per level
        head, colon, sep, end = first[:-2] + ',\n "experiment": {\n  ', ": ", ",\n  ", "\n}"
        tail = ',\n "execution": '
    else:
        head, colon, sep, end = first[:-1] + ',"experiment":{', ":", ",", "}"
        tail = ',"execution":'
    if not cached.startswith(head) or not cached.endswith(end) or cached.startswith(head + "}"):
        return None
    config = text(report["experiment"]["config"], 2)
    rest = cached[len(head) : -len(end)]
    return f'{head}"config"{colon}{config}{sep}{rest}{tail}{text(report["execution"], 1)}{end}'


def _report_text(cached: str, report: dict[str, Any]) -> str:
    """report.json's text: ``encode(report, compact=...)``'s bytes, spliced where the cached text allows."""
    compact = "histograms_file" in report
    if not compact:
        flat = encode(report, compact=True)  # the C encoder: says whether the document is small enough to indent
        if len(flat) > INDENT_UP_TO:
            return flat
    return _spliced(cached, report, indent=not compact) or encode(report, compact=compact)


def report_document(exp: Experiment, entry: Entry) -> dict[str, Any]:
    """The report the report stage wrote (cached) as every reader sees it: unpacked, histograms in place."""
    return unpack_report(_cached_report(exp, entry), entry.file("report.json").parent)


class ReportHead(dict[str, Any]):
    """What a cached rerun needs of report.json to print its verdict and write its outputs: schema, schema
    version, verdict, the config's path and the execution. :meth:`load` reads the whole document (packed, as
    written into the output directory) when a caller needs more; parsing report.json (4 MB at 8,000 layers)
    was a fifth of such a rerun."""

    def __init__(self, head: dict[str, Any], load: Callable[[], dict[str, Any]]) -> None:
        super().__init__(head)
        self.load = load


def _head(entry: Entry, cached: str) -> dict[str, Any] | None:
    """The report's first members from the report stage's record of its verdict (in its entry's manifest),
    or None where that record is missing or the report's text is not compact (packed or large). The caller
    binds the record to the report by content: it is used only where the report's text begins with exactly
    these members (:func:`_spliced`), so a record that disagrees with report.json is never believed."""
    from layerscope.pipelines.stages.report import SCHEMA_VERSION

    result = entry.manifest.get("result")
    verdict = result.get("verdict") if isinstance(result, dict) else None
    if verdict not in ("pass", "fail") or not cached.startswith('{"'):
        return None
    return {"schema": "layerscope-report", "schema_version": SCHEMA_VERSION, "verdict": verdict, "experiment": {}}


def _loader(cached: str, exp: Experiment, execution: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The whole report as :func:`write_outputs` would return it, parsed from ``cached`` when called."""

    def load() -> dict[str, Any]:
        report = _with_config(json.loads(cached), exp)
        report["execution"] = execution
        return report

    return load


def write_outputs(
    exp: Experiment,
    plan: Plan,
    outcomes: Mapping[str, Outcome],
    out_dir: Path,
    cache: Cache,
    started: float,
    warnings: list[str] | None = None,
    *,
    unpacked: bool = True,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write report.json, the configured report formats and dump links into ``out_dir``; returns the report
    document and the files written by format. The report stage must have an entry. With ``unpacked=False``
    the document may be report.json's own (packed: :func:`.packing.unpack_report` with ``out_dir`` reads it),
    or, for a compact report.json, a :class:`ReportHead` (its ``load()`` gives that document), which spares a
    caller that needs only the verdict the parsing and unpacking of thousands of layers."""
    report_entry = outcomes["report"].entry
    assert report_entry is not None
    cached = report_entry.file("report.json").read_text()
    execution = {
        "stages": {
            sid: {
                "status": o.status,
                "seconds": round(o.seconds, 3),
                "key": plan[sid].key,
                "reason": o.reason,
                **({"error": o.error} if o.error else {}),
                **({"without": list(o.without)} if o.without else {}),
                **({"warnings": w} if (w := _stage_warnings(o)) else {}),
            }
            for sid, o in outcomes.items()
        },
        **({"warnings": list(warnings)} if warnings else {}),
        "cache": str(cache.root),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 3),
    }
    head = None if unpacked else _head(report_entry, cached)
    if head is not None:
        head = {**_with_config(head, exp), "execution": execution}
    text = None if head is None else _spliced(cached, head)
    report: dict[str, Any]
    if head is not None and text is not None:  # the verdict record begins the report's text, member for member
        report = ReportHead(head, _loader(cached, exp, execution))
    else:
        report = _with_config(json.loads(cached), exp)
        report["execution"] = execution
        text = _report_text(cached, report)
    files = {"json": out_dir / "report.json"}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_histograms(report_entry, out_dir)  # first: report.json names the file it goes with
        atomic_write(files["json"], text)
        folder = report_entry.file("report.json").parent
        loaded: list[dict[str, Any]] = []

        def full() -> dict[str, Any]:  # what the renderers read, unpacked once where one needs it (in place)
            if not loaded:
                loaded.append(unpack_report(report.load() if isinstance(report, ReportHead) else report, folder))
            return loaded[0]

        # What the report stage wrote (the report without `execution`), by content: the key of cached HTML charts.
        content_key = report_entry.manifest["files"]["report.json"]["sha256"]
        for fmt in exp.report_formats:
            if fmt in RENDERERS:
                files[fmt] = out_dir / f"report.{fmt}"
                text = (
                    _cached_markdown(report, cache, content_key, full)
                    if fmt == "md"
                    else RENDERERS[fmt](full(), cache, content_key)
                )
                atomic_write(files[fmt], text)
        if unpacked:
            full()
        _link_dumps(exp, plan, outcomes, out_dir, cache)
        cache.record_links(out_dir)  # so that `cache gc` and `clear` can name the run folders they break
        _copy_calibration_cache(plan, outcomes, out_dir, cache)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, exc.filename or out_dir) from None
        raise UsageError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    return report, files


def _write_histograms(entry: Entry, out_dir: Path) -> None:
    """The histograms file of a packed report beside report.json (a stale one of an earlier run goes)."""
    target = out_dir / HISTOGRAMS_FILE
    source = entry.file(HISTOGRAMS_FILE)
    if source.is_file():
        atomic_write(target, source.read_bytes())
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()


def _stage_warnings(outcome: Outcome) -> list[str]:
    """The warnings a stage raised when it ran (kept in its cache entry's manifest, so cached stages keep them)."""
    if outcome.entry is None:
        return []
    return list(outcome.entry.manifest.get("result", {}).get("warnings", []))


def _link_dumps(exp: Experiment, plan: Plan, outcomes: Mapping[str, Outcome], out_dir: Path, cache: Cache) -> None:
    """dumps/<run>.h5 -> the dump in the cache (a link: dumps can be gigabytes; kept while the entry lives), and in
    the streaming mode kept/<candidate>.h5 -> the worst samples a stream stage kept (dump.keep: failing)."""
    from layerscope.pipelines.stages import dump, stream

    for folder, kind, ids, file in (
        ("dumps", "dump", {run: dump.stage_id(run) for run in [exp.reference, *exp.candidates]}, dump.DUMP_FILE),
        ("kept", "stream", {c: stream.stage_id(c) for c in exp.candidates}, stream.KEPT_FILE),
    ):
        links = out_dir / folder
        for run, sid in ids.items():
            entry = outcomes[sid].entry if sid in outcomes else None
            if entry is None and sid in plan.stages:
                entry = cache.lookup(kind, plan[sid].key, touch=False).entry
            target = entry.file(file) if entry is not None else None
            _link(links, f"{run}.h5", target if target is not None and target.is_file() else None)


def _link(links: Path, name: str, target: Path | None) -> None:
    """links/name -> target, made atomically (a concurrent run never sees a missing or half-made link); without
    a target a stale link goes (the mode changed, the entry is gone)."""
    link = links / name
    if target is None:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        return
    links.mkdir(exist_ok=True)
    tmp = links / f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # only left when replacing failed: never leave a temporary behind


def _copy_calibration_cache(plan: Plan, outcomes: Mapping[str, Outcome], out_dir: Path, cache: Cache) -> None:
    """calibration.cache: the INT8 scales in TensorRT's format, ready for a TensorRT 10 `flags` build."""
    if not any(ps.stage.kind == "calibrate" for ps in plan.stages.values()):
        return  # (before importing the calibrate stage: most plans have none)
    from layerscope.pipelines.stages.calibrate import STAGE_ID, TRT_CACHE

    entry = outcomes[STAGE_ID].entry or cache.lookup("calibrate", plan[STAGE_ID].key, touch=False).entry
    if entry is not None and entry.file(TRT_CACHE).is_file():
        atomic_write(out_dir / TRT_CACHE, entry.file(TRT_CACHE).read_text())


MARKDOWN_FILE = "body.md"


def _markdown(report: dict[str, Any], cache: Cache | None, content_key: str | None) -> str:
    return _cached_markdown(report, cache, content_key, lambda: report)


def _cached_markdown(
    report: dict[str, Any], cache: Cache | None, content_key: str | None, unpacked: Callable[[], dict[str, Any]]
) -> str:
    """report.md; its body (all but how this invocation ran) comes from the cache when the same report stage
    output was rendered by the same code for the same config path: a warm rerun of a model with thousands of
    layers re-rendered megabytes of Markdown that could not have changed. ``report`` may be packed (only its
    config path and execution are read); ``unpacked()`` gives the document to render on a miss."""
    from layerscope.pipelines.reports.markdown import markdown, markdown_body, markdown_execution
    from layerscope.runner.codeversion import code_version
    from layerscope.runner.hashing import digest

    if cache is None or content_key is None:
        return markdown(unpacked())
    code = code_version("layerscope.pipelines.reports.markdown")
    key = digest({"report": content_key, "config": report["experiment"].get("config"), "markdown": code})
    found = cache.lookup("markdown", key)
    if found.entry is None:
        with cache.lock(key):
            found = cache.lookup("markdown", key)
            if found.entry is None:
                body = markdown_body(unpacked())
                with cache.staging("markdown", key) as tmp:
                    (tmp / MARKDOWN_FILE).write_text(body, encoding="utf-8")
                    cache.publish("markdown", key, tmp, {"stage": "report.md", "material": {"report": content_key}})
                return body + markdown_execution(report)
    assert found.entry is not None
    return found.entry.file(MARKDOWN_FILE).read_text(encoding="utf-8") + markdown_execution(report)


def _html(report: dict[str, Any], cache: Cache | None, content_key: str | None) -> str:
    from layerscope.pipelines.reports.html import render_html

    return render_html(report, cache, content_key)


# report.json is always written; these render the other formats a config may ask for (report.formats).
# A renderer gets the report, the cache (None: do not cache) and the digest of the report's cached content.
Renderer = Callable[[dict[str, Any], "Cache | None", "str | None"], str]
RENDERERS: dict[str, Renderer] = {"md": _markdown, "html": _html}


def render(report: dict[str, Any], fmt: str) -> str:
    """A report document as ``json``, ``md`` or ``html`` (charts drawn, not cached)."""
    if fmt == "json":
        return json.dumps(report, indent=1)
    return RENDERERS[fmt](report, None, None)
