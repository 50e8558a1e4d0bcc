"""Reading a report: a run directory or a report.json, validated against ``schemas/report.schema.json`` before
anything reads it, so a truncated, hand-edited or foreign file is one clear error (exit 2), never a KeyError
deep inside a renderer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from layerscope.pipelines.reports.model import SCHEMA, Report
from layerscope.pipelines.reports.packing import unpack_report
from layerscope.runner.errors import UsageError
from layerscope.runner.spec import pointer

SHOWN_PROBLEMS = 3
SCHEMA_VERSION = 3  # the report.json layout this layerscope writes (schemas/report.schema.json)
# and the ones it reads: 2 never packs layers (packing); 1 also stores histogram counts as {"bin": count}
READABLE = (1, 2, 3)


class ReportError(UsageError):
    """A file that is not a valid layerscope report (exit 2)."""


def report_path(path: str | os.PathLike[str]) -> Path:
    """report.json of a run directory, or the file itself."""
    p = Path(path)
    return p / "report.json" if p.is_dir() else p


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The report.json document at ``path`` (a run directory or the file), validated, its packed layers
    unpacked and the histograms kept beside it put back (:mod:`.packing`)."""
    p = report_path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise ReportError(f"no report at {p}") from None
    except IsADirectoryError:
        raise ReportError(f"no report.json in {p}") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read report {p}: {exc}") from None
    except RecursionError:
        raise ReportError(f"{p} is not a layerscope report: its JSON is nested too deeply") from None
    check_version(data, str(p))
    try:
        unpack_report(data, p.parent)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ReportError(
            f"{p} is not a valid layerscope report: its packed layer table is malformed ({type(exc).__name__}: "
            f"{str(exc)[:200]})",
            hint="it may be truncated, edited by hand, or written by another version of layerscope",
        ) from None
    validate_report(data, str(p))
    return data


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; layerscope writes them as the strings "nan", "inf" and "-inf"."""
    raise ValueError(f"{name} is not a JSON number (layerscope writes non-finite values as strings)")


def load_report(path: str | os.PathLike[str]) -> Report:
    """The typed report at ``path`` (a run directory or a report.json), validated against the schema."""
    p = report_path(path)
    return Report.from_dict(read_report(p), files={"json": p})


def check_version(data: Any, source: str) -> None:
    """Raise :class:`ReportError` unless ``data`` is a layerscope report of a version this layerscope reads."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ReportError(f"{source} is not a layerscope report")
    version = data.get("schema_version")
    if version not in READABLE or isinstance(version, bool):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        raise ReportError(
            f"{source} has report schema version {version!r}; this layerscope reads versions "
            + " and ".join(map(str, READABLE)),
            hint="it was written by a newer layerscope: upgrade to read it" if newer else None,
        )


def validate_report(data: Any, source: str) -> None:
    """Raise :class:`ReportError` naming where ``data`` (unpacked) breaks the report schema (the first few
    places)."""
    from jsonschema import Draft202012Validator

    from layerscope.schemas import load_schema

    check_version(data, source)
    try:
        errors = sorted(Draft202012Validator(load_schema("report")).iter_errors(data), key=lambda e: list(e.path))
    except RecursionError:
        raise ReportError(f"{source} is not a valid layerscope report: it is nested too deeply") from None
    if not errors:
        return
    lines = [f"{pointer(*e.absolute_path) or '/'}: {e.message[:200]}" for e in errors[:SHOWN_PROBLEMS]]
    more = f"\n  … and {len(errors) - SHOWN_PROBLEMS} more" if len(errors) > SHOWN_PROBLEMS else ""
    raise ReportError(
        f"{source} is not a valid layerscope report (schema version {data.get('schema_version')!r}):\n  "
        + "\n  ".join(lines)
        + more,
        hint="it may be truncated, edited by hand, or written by another version of layerscope",
    )
