"""A sweep's summary (sweep.json, sweep.md, sweep.html) and the diff of two summaries.

One row per (experiment, candidate): verdict, root-cause layer, first failing layer, worst layer and its
deviation ratio, the experiment's time and cache hits, and a link to the experiment's own report. An
experiment whose stages failed is one row with the error. Undefined stays undefined: a value the report
does not have is null in JSON and "—" in md/html.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import UsageError

if TYPE_CHECKING:
    from layerscope.sweeps import ExperimentRun, SweepSpec

SCHEMA = "layerscope-sweep"
SCHEMA_VERSION = 1
SUMMARY_FILE = "sweep.json"


def summary_document(
    spec: SweepSpec, runs: Sequence[ExperimentRun], *, started: float, executor: str, stats: Mapping[str, int]
) -> dict[str, Any]:
    experiments = [_experiment(spec.out_dir, r) for r in runs]
    statuses = {e["status"] for e in experiments}
    verdict = "error" if "error" in statuses else "fail" if "fail" in statuses else "pass"
    stages = sum(len(r.outcomes) for r in runs)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "name": spec.name,
        "sweep": spec.source,
        "verdict": verdict,
        "experiments": experiments,
        "totals": {
            "experiments": len(runs),
            "passed": sum(1 for e in experiments if e["status"] == "pass"),
            "failed": sum(1 for e in experiments if e["status"] == "fail"),
            "errors": sum(1 for e in experiments if e["status"] == "error"),
            "stages": stages,
            "unique_stages": stats["unique_stages"],
            "ran": stats["ran"],
        },
        "execution": {
            "executor": executor,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - started, 3),
        },
    }


def _experiment(out_dir: Path, run: ExperimentRun) -> dict[str, Any]:
    statuses = [o.status for o in run.outcomes.values()]
    row: dict[str, Any] = {
        "id": run.id,
        "config": os.fspath(run.config),
        "overrides": list(run.overrides),
        "dir": os.path.relpath(run.out_dir, out_dir),
        "status": "error" if run.report is None else run.report["verdict"],
        # Its own stages' time: a stage shared with an earlier experiment is counted there, once.
        "seconds": round(sum(o.seconds for o in run.outcomes.values() if o.status == "ran" and o.sid in run.owned), 3),
        "stages": len(statuses),
        "cached": statuses.count("cached"),
        "shared": run.shared,
        "reports": {fmt: os.path.relpath(p, out_dir) for fmt, p in sorted((run.files or {}).items())},
    }
    if run.error is not None:
        row["error"] = run.error
    row["candidates"] = [_candidate(c) for c in (run.report or {}).get("comparisons", [])]
    return row


def _candidate(c: Mapping[str, Any]) -> dict[str, Any]:
    causes = c.get("root_causes") or []
    return {
        "candidate": c["candidate"],
        "reference": c["reference"],
        "verdict": c["verdict"],
        "root_cause": causes[0]["layer"] if causes else None,
        "first_failing_layer": c.get("first_failing_layer"),
        "failing_layers": c.get("failing_layers"),
        "worst_layer": c.get("worst_layer"),
        "worst_deviation_ratio": c.get("worst_deviation_ratio"),
    }


def write_summary(document: Mapping[str, Any], out_dir: Path, formats: Iterable[str]) -> dict[str, Path]:
    """sweep.json always; sweep.md and sweep.html as asked."""
    from layerscope.runner.files import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / SUMMARY_FILE}
    atomic_write(files["json"], json.dumps(document, indent=1, allow_nan=False))
    for fmt in formats:
        if fmt == "md":
            files["md"] = out_dir / "sweep.md"
            atomic_write(files["md"], render_markdown(document))
        elif fmt == "html":
            files["html"] = out_dir / "sweep.html"
            atomic_write(files["html"], render_html(document))
    return files


# -- rendering ------------------------------------------------------------------------------------------
_COLUMNS = (
    "Experiment",
    "Candidate",
    "Verdict",
    "Root cause",
    "First failing",
    "Worst layer",
    "Deviation",
    "Time",
    "Cache",
)


def rows(document: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """(experiment, candidate) pairs; an experiment without a report is one row with no candidate."""
    out: list[tuple[Mapping[str, Any], Mapping[str, Any] | None]] = []
    for e in document["experiments"]:
        out += [(e, c) for c in e["candidates"]] or [(e, None)]
    return out


def _cells(e: Mapping[str, Any], c: Mapping[str, Any] | None) -> list[str]:
    cache = f"{e['cached']}/{e['stages']} cached" + (f", {e['shared']} shared" if e["shared"] else "")
    if c is None:
        return [e["id"], "—", "ERROR", "—", "—", "—", "—", f"{e['seconds']:.1f}s", cache]
    ratio = c["worst_deviation_ratio"]
    return [
        e["id"],
        f"{c['candidate']} vs {c['reference']}",
        str(c["verdict"]).upper(),
        c["root_cause"] or "—",
        c["first_failing_layer"] or "—",
        c["worst_layer"] or "—",
        "—" if ratio is None else f"{100 * ratio:.4f}%",
        f"{e['seconds']:.1f}s",
        cache,
    ]


def _link(e: Mapping[str, Any]) -> str | None:
    reports = e.get("reports") or {}
    return next((reports[f] for f in ("html", "md", "json") if f in reports), None)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(document: Mapping[str, Any]) -> str:
    t = document["totals"]
    lines = [
        f"# Sweep {document['name']}: {document['verdict'].upper()}",
        "",
        f"{t['experiments']} experiments ({t['passed']} pass, {t['failed']} fail, {t['errors']} error); "
        f"{t['stages']} stages, {t['unique_stages']} distinct (identical stages ran once), {t['ran']} ran; "
        f"{document['execution']['seconds']:.1f}s on the {document['execution']['executor']} executor.",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for e, c in rows(document):
        cells = [_md(x) for x in _cells(e, c)]
        link = _link(e)
        if link:
            cells[0] = f"[{cells[0]}]({link})"
        lines.append("| " + " | ".join(cells) + " |")
    errors = [e for e in document["experiments"] if e.get("error")]
    if errors:
        lines += ["", "## Errors", ""] + [f"- **{_md(e['id'])}**: {_md(e['error'])}" for e in errors]
    return "\n".join(lines) + "\n"


def render_html(document: Mapping[str, Any]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in _COLUMNS)
    body = []
    for e, c in rows(document):
        cells = [esc(x) for x in _cells(e, c)]
        link = _link(e)
        if link:
            cells[0] = f'<a href="{esc(link)}">{cells[0]}</a>'
        verdict = "error" if c is None else str(c["verdict"])
        body.append(f'<tr class="{esc(verdict)}">' + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    errors = "".join(
        f"<li><b>{esc(e['id'])}</b>: {esc(e['error'])}</li>" for e in document["experiments"] if e.get("error")
    )
    summary = esc(render_markdown(document).splitlines()[2])
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>Sweep {esc(document['name'])}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "tr.fail td{background:#fde2e2}tr.error td{background:#f3d0f0}tr.pass td{background:#e4f6e4}"
        "</style></head><body>"
        f"<h1>Sweep {esc(document['name'])}: {esc(document['verdict'].upper())}</h1><p>{summary}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + (f"<h2>Errors</h2><ul>{errors}</ul>" if errors else "")
        + "</body></html>\n"
    )


# -- reading and diffing --------------------------------------------------------------------------------
def read_summary(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The summary at ``path`` (sweep.json or the sweep's folder); None when it is not a sweep summary."""
    p = Path(path)
    if p.is_dir():
        p = p / SUMMARY_FILE
    if p.suffix != ".json" or not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # not a summary: the report reader says what is wrong with it
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return None
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{p}: sweep summary version {doc.get('schema_version')!r}; this layerscope reads {SCHEMA_VERSION}"
        )
    return doc


def diff_summaries(old: Mapping[str, Any], new: Mapping[str, Any], *, tolerance: float = 0.1) -> dict[str, Any]:
    """Per (experiment, candidate): verdict and worst deviation ratio before and after; what appeared and went.
    A regression is pass -> fail/error, or a worst deviation ratio more than ``tolerance`` (relative) worse."""

    def index(doc: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for e, c in rows(doc):
            key = (e["id"], "" if c is None else c["candidate"])
            out[key] = {"verdict": "error" if c is None else c["verdict"], **(dict(c) if c else {})}
        return out

    a, b = index(old), index(new)
    changes: list[dict[str, Any]] = []
    regressed = False
    for key in [*a, *(k for k in b if k not in a)]:
        before, after = a.get(key), b.get(key)
        row = {"experiment": key[0], "candidate": key[1] or None}
        if before is None or after is None:
            changes.append({**row, "change": "added" if before is None else "removed"})
            continue
        ra, rb = before.get("worst_deviation_ratio"), after.get("worst_deviation_ratio")
        worse = ra is not None and rb is not None and rb > ra * (1 + tolerance) and rb - ra > 1e-12
        went_bad = before["verdict"] == "pass" and after["verdict"] != "pass"
        if before["verdict"] != after["verdict"] or ra != rb or before.get("root_cause") != after.get("root_cause"):
            changes.append(
                {
                    **row,
                    "change": "regressed" if went_bad or worse else "changed",
                    "verdict": [before["verdict"], after["verdict"]],
                    "worst_deviation_ratio": [ra, rb],
                    "root_cause": [before.get("root_cause"), after.get("root_cause")],
                }
            )
        regressed = regressed or went_bad or worse
    return {"old": old.get("name"), "new": new.get("name"), "regressed": regressed, "changes": changes}


def render_diff(d: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(d, indent=1, allow_nan=False) + "\n"
    if not d["changes"]:
        return f"sweeps {d['old']} -> {d['new']}: no change in verdicts or worst deviations\n"

    def ratio(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.4f}%"

    lines = [
        f"sweeps {d['old']} -> {d['new']}: {len(d['changes'])} changed" + (" (REGRESSED)" if d["regressed"] else "")
    ]
    if fmt == "md":
        lines = [
            "## " + lines[0],
            "",
            "| Experiment | Candidate | Change | Verdict | Worst deviation | Root cause |",
            "|---|---|---|---|---|---|",
        ]
    for c in d["changes"]:
        if "verdict" in c:
            verdict = " → ".join(str(v).upper() for v in c["verdict"])
            dev = " → ".join(ratio(v) for v in c["worst_deviation_ratio"])
            cause = " → ".join(v or "—" for v in c["root_cause"])
        else:
            verdict = dev = cause = "—"
        cells = [c["experiment"], c["candidate"] or "—", c["change"], verdict, dev, cause]
        if fmt == "md":
            lines.append("| " + " | ".join(_md(x) for x in cells) + " |")
        else:
            lines.append("  " + "  ".join(cells))
    return "\n".join(lines) + "\n"
