"""The order in which `fix` tries layers: attribution's local error, root causes first.

Ranking by "pin this layer alone" costs two inference passes per candidate and, on a chain of inherited error,
is close to noise (pinning one of two broken layers barely moves the output). Attribution already knows, per
layer, the error it makes *alone on the reference's inputs*: the layers that break their own limits locally
(the report's root causes) are what a passing set almost always needs, worst local SQNR first; the others
follow by local SQNR, then network order. Layers attribution could not judge (not compared, not attributable)
come last in network order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment


@dataclass(frozen=True)
class LocalError:
    """One layer's error alone on the reference's inputs (over its outputs: the worst)."""

    fails: bool  # breaks its own limits locally: a root cause
    sqnr_db: float  # local SQNR; -inf when undefined or non-finite values were introduced
    power: float  # local mean squared error


def local_errors(doc: Mapping[str, Any], exp: Experiment) -> dict[str, LocalError]:
    """Per node, its local error from an attribution.json document (only layers attributed ``ok``)."""
    from layerscope.pipelines.metrics.limits import check
    from layerscope.runner.jsonio import as_float

    producer = exp.model.summary.producer_of()
    errors: dict[str, LocalError] = {}
    for tensor, result in doc.get("tensors", {}).items():
        if result.get("status") != "ok" or tensor not in producer:
            continue
        node = producer[tensor].name
        local = result["local"]
        sqnr = as_float(local["sqnr_db"]) if local.get("sqnr_db") is not None else -math.inf
        sqnr = -math.inf if math.isnan(sqnr) else sqnr
        rmse = as_float(local["rmse"]) if local.get("rmse") is not None else math.inf
        power = math.inf if math.isnan(rmse) else rmse * rmse
        fails = bool(check(local, exp.thresholds.for_layer(node)))
        old = errors.get(node)
        if old is not None:
            fails, sqnr, power = fails or old.fails, min(sqnr, old.sqnr_db), max(power, old.power)
        errors[node] = LocalError(fails, sqnr, power)
    return errors


def rank(layers: Sequence[str], errors: Mapping[str, LocalError], order: Mapping[str, int]) -> list[str]:
    """``layers`` ordered for the search: local failures (worst SQNR first), then the rest by local SQNR, then
    the layers without a local error; network order between equals."""

    def key(layer: str) -> tuple[int, float, int]:
        e = errors.get(layer)
        if e is None:
            return (2, 0.0, order.get(layer, 0))
        return (0 if e.fails else 1, e.sqnr_db, order.get(layer, 0))

    return sorted(layers, key=key)
