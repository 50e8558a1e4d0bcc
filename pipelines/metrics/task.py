"""Task-level agreement of a candidate's outputs with the reference's: does reduced precision change the answer?

Per-layer metrics say *where* values drift; these say whether the drift matters to the task.

* **Classification** (:class:`Agreement`): the class axis of an output (default: the last) holds scores;
  every other position is a *row* (a batch item, a pixel of a segmentation map, a token). Per row: top-1
  agreement (the candidate's arg-max is the reference's) and top-k overlap (``|topk(ref) ∩ topk(cand)| / k``).
  A row where the candidate has a NaN or an infinity and the reference does not has no answer: it counts as
  disagreeing, with zero overlap. Results: the share of agreeing rows, the mean overlap, and the samples
  whose answer changed in any row (the first :data:`SHOWN` of them by index).
* **A user score** (:class:`Scores`): a function of ``(reference_outputs, candidate_outputs)`` (two dicts of
  output name -> array for one sample; the shape of Polygraphy's ``--compare-func-script``) returning a number
  or a bool (higher is better, a bool counts 1/0), or a mapping of names to those (Polygraphy's
  ``{output: passed}``). Results per name: the mean over samples, the minimum and the worst samples. A value
  that is NaN, or not a number, is an error of the function, reported with its sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

SHOWN = 20  # samples whose answer changed, listed by index
WORST = 5  # lowest-scoring samples listed per score


class Agreement:
    """Top-1 agreement and top-k overlap of one output, accumulated sample by sample."""

    def __init__(self, k: int, axis: int = -1) -> None:
        self.k = k
        self.axis = axis
        self.rows = 0
        self.agree = 0
        self.overlap = 0.0
        self.nonfinite_rows = 0
        self.changed: list[int] = []
        self.changed_count = 0
        self.classes: int | None = None

    def update(self, sample: int, ref: np.ndarray, cand: np.ndarray) -> None:
        if ref.shape != cand.shape:
            raise ValueError(f"reference shape {list(ref.shape)} vs candidate {list(cand.shape)}")
        r = np.moveaxis(np.asarray(ref, dtype=np.float64), self.axis, -1)
        c = np.moveaxis(np.asarray(cand, dtype=np.float64), self.axis, -1)
        classes = r.shape[-1]
        self.classes = classes
        r, c = r.reshape(-1, classes), c.reshape(-1, classes)
        k = min(self.k, classes)
        broken = ~np.isfinite(c).all(axis=1) & np.isfinite(r).all(axis=1)
        top1 = (np.argmax(r, axis=1) == np.argmax(c, axis=1)) & ~broken
        # top-k by a stable sort of the negated scores: ties resolve to the lower class index, as arg-max does
        rk = np.argsort(-r, axis=1, kind="stable")[:, :k]
        ck = np.argsort(-c, axis=1, kind="stable")[:, :k]
        common = (rk[:, :, None] == ck[:, None, :]).any(axis=2).sum(axis=1) / k
        common[broken] = 0.0
        self.rows += r.shape[0]
        self.agree += int(top1.sum())
        self.overlap += float(common.sum())
        self.nonfinite_rows += int(broken.sum())
        if not top1.all():
            self.changed_count += 1
            if len(self.changed) < SHOWN:
                self.changed.append(sample)

    def result(self) -> dict[str, Any]:
        return {
            "k": min(self.k, self.classes or self.k),
            "classes": self.classes,
            "rows": self.rows,
            "top1_agreement": self.agree / self.rows if self.rows else None,
            "topk_overlap": self.overlap / self.rows if self.rows else None,
            "rows_disagreeing": self.rows - self.agree,
            "rows_nonfinite": self.nonfinite_rows,
            "samples_changed": self.changed_count,
            "changed_samples": list(self.changed),
        }


class ScoreError(ValueError):
    """A user score function returned something that is not a score."""


def as_scores(value: Any) -> dict[str, float]:
    """A user function's return value as {name: score}; a plain value is named ``score``."""
    items = value.items() if isinstance(value, Mapping) else [("score", value)]
    out = {}
    for name, v in items:
        if isinstance(v, (bool, np.bool_)):
            out[str(name)] = float(bool(v))
            continue
        try:
            number = float(v)
        except (TypeError, ValueError):
            raise ScoreError(f"returned {type(v).__name__} {v!r} for {name!r}; expected a number or a bool") from None
        if math.isnan(number):
            raise ScoreError(f"returned NaN for {name!r}")
        out[str(name)] = number
    if not out:
        raise ScoreError("returned an empty mapping")
    return out


class Scores:
    """A user function's scores, accumulated sample by sample (the same names every sample)."""

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[float, int]]] = {}

    def update(self, sample: int, scores: Mapping[str, float]) -> None:
        if self.values and set(scores) != set(self.values):
            raise ScoreError(f"returned names {sorted(scores)}, but {sorted(self.values)} for earlier samples")
        for name, v in scores.items():
            self.values.setdefault(name, []).append((v, sample))

    def result(self) -> dict[str, Any]:
        out = {}
        for name, pairs in self.values.items():
            finite = [v for v, _ in pairs]
            worst = sorted(pairs)[:WORST]
            out[name] = {
                "mean": math.fsum(finite) / len(finite),
                "min": min(finite),
                "max": max(finite),
                "samples": len(pairs),
                "worst": [{"sample": s, "value": v} for v, s in worst],
            }
        return out
