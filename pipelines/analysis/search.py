"""Which layers must stay FP32: a ranking from attribution and a search for a small, minimal set to pin.

Every candidate configuration is an ordinary variant of the experiment (the same run with other layers
pinned) whose build, dump and compare stages go through the artifact cache, so a second search, or a search
after a run, reuses everything already computed. Nothing edits the user's config: the result is an
``overrides`` snippet to paste.

* **Ranking** (:mod:`.ranking`): attribution's local error, the layers that fail locally (root causes) first.
  Only when attribution is off or unavailable does the search fall back to *sensitivity*, two configurations
  per candidate (pin only this layer; lower only this layer), which costs 2N+1 inference passes.
* **Tries read only what their verdict reads**: the baseline is judged on every compared layer; a try dumps
  and compares only the layers that failed there plus the target tensors (the *watched* set), so its build
  marks and its dump writes a handful of tensors instead of the whole model. The set found is confirmed on
  every compared layer at the end; when that confirmation fails (pinning moved the failure elsewhere), the
  search is repeated watching those layers too, and if it fails again, with every compared layer watched.
* **Search**: the shortest passing prefix of the ranking, starting at the number of root causes, by doubling
  then bisection; then each layer, least useful first, is dropped while the thresholds still pass (one try
  per layer). ``minimal`` is claimed only when every kept layer's removal failed against the final set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.analysis.ranking import LocalError, local_errors, rank
from layerscope.runner.errors import StageError, UsageError
from layerscope.runner.hashing import digest

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment
    from layerscope.runner.execute import Outcome, Reporter


@dataclass(frozen=True)
class Evaluation:
    pinned: tuple[str, ...]
    passed: bool
    failing: int
    first_failing: str | None
    output_error: float  # noise-to-signal power ratio over the target tensors (inf: non-finite introduced)
    why: str = ""
    failing_tensors: tuple[str, ...] = ()
    watched: int = 0  # how many compared tensors the verdict read

    @property
    def output_sqnr_db(self) -> float:
        if self.output_error == 0:
            return math.inf
        return -10 * math.log10(self.output_error) if math.isfinite(self.output_error) else -math.inf


@dataclass
class Cost:
    ran: int = 0
    cached: int = 0
    inference_runs: int = 0  # every sample through one model: dump and attribute stages, each side of a stream


@dataclass
class SearchResult:
    run: str
    base_pinned: tuple[str, ...]
    targets: tuple[str, ...]
    candidates: tuple[str, ...]
    sensitivity: list[dict[str, Any]]  # the ranking, one row per candidate, in the order tried
    steps: list[dict[str, Any]] = field(default_factory=list)
    found: tuple[str, ...] | None = None
    minimal: bool = False
    cost: Cost = field(default_factory=Cost)
    notes: list[str] = field(default_factory=list)
    ranked_by: str = "attribution"  # or "sensitivity" (attribution off or unavailable)


class Search:
    def __init__(
        self,
        exp: Experiment,
        run: str,
        *,
        targets: Sequence[str] | None = None,
        max_candidates: int = 64,
        jobs: int = 1,
        reporter: Reporter | None = None,
        log: Callable[[str], None] = lambda m: None,
    ) -> None:
        if run not in exp.runs or run == exp.reference:
            candidates = ", ".join(r for r in exp.runs if r != exp.reference)
            raise UsageError(f"--run must name a candidate run of {exp.name} (not the reference): {candidates}")
        self.exp = exp
        self.run = exp.runs[run]
        self.jobs = jobs
        self.reporter = reporter
        self.log = log
        self.cost = Cost()
        outputs = [t.name for t in exp.model.summary.outputs if t.is_float]
        self.targets = tuple(targets or outputs)
        self.max_candidates = max_candidates
        self._evaluations: dict[tuple[tuple[str, ...], tuple[str, ...]], Evaluation] = {}
        self._order = {n.name: n.index for n in exp.model.summary.nodes}
        # what a try dumps and judges; None: every compared layer (until the baseline narrows it)
        self.watched: tuple[str, ...] | None = None

    # -- running variants through the cache -----------------------------------------------------------
    def _variant(self, pinned: Iterable[str], tensors: Sequence[str]) -> Experiment:
        pins = tuple(sorted(set(pinned), key=lambda n: self._order.get(n, 0)))
        label = f"{self.run.name}~{len(pins)}:{digest(pins)[:8]}"
        run = replace(self.run, name=label, pinned=pins)
        runs = {self.exp.reference: self.exp.runs[self.exp.reference], label: run}
        return replace(self.exp, runs=runs, candidates=(label,), tensors=tuple(tensors), attribution=False)

    def _tally(self, outcomes: Mapping[str, Outcome]) -> None:
        for o in outcomes.values():
            if o.status == "ran":
                self.cost.ran += 1
                # attribution runs every layer once over the samples: as much inference as a dump
                self.cost.inference_runs += o.sid.startswith(("dump[", "attribute["))
                self.cost.inference_runs += 2 * o.sid.startswith("stream[")  # (dump.keep: none) runs both models
            elif o.status == "cached":
                self.cost.cached += 1

    def _execute(self, variants: list[Experiment]) -> list[dict[str, Any]]:
        """Run the variants' stages (shared ones once) and return each variant's compare.json."""
        import json

        from layerscope.pipelines.stages import stages_for
        from layerscope.pipelines.stages.plan import comparison_id
        from layerscope.runner.execute import plan_decisions, run_plan
        from layerscope.runner.graph import Plan

        stages: dict[str, Any] = {}
        for v in variants:
            for s in stages_for(v):
                if s.kind != "report":
                    stages.setdefault(s.id, s)
        plan = Plan(stages.values())
        decisions = plan_decisions(plan, self.exp.cache, self.exp.scope + "-fix")
        outcomes = run_plan(
            plan,
            self.exp.cache,
            self.exp.scope + "-fix",
            decisions,
            jobs=self.jobs,
            reporter=self.reporter,
            experiment=self.exp.name,
        )
        failed = [o for o in outcomes.values() if o.status in ("failed", "skipped")]
        if failed:
            raise StageError(f"{failed[0].sid} {failed[0].status}: {failed[0].error or failed[0].reason}")
        self._tally(outcomes)
        docs = []
        for v in variants:
            entry = outcomes[comparison_id(v, v.candidates[0])].entry
            assert entry is not None
            docs.append(json.loads(entry.file("compare.json").read_text()))
        return docs

    def attribution(self) -> dict[str, LocalError] | None:
        """Each layer's local error from the run's attribution stage (run, or from the cache); None when
        attribution is off, or failed (the search then ranks by sensitivity and says why)."""
        from layerscope.pipelines.stages import plan_for
        from layerscope.pipelines.stages.attribute import stage_id
        from layerscope.runner.execute import plan_decisions, run_plan
        from layerscope.runner.jsonio import read_json

        if not self.exp.attribution or self.run.name not in self.exp.candidates:
            return None
        stage_plan = plan_for(self.exp)
        sid = stage_id(self.run.name)
        if sid not in stage_plan.stages:  # the streaming mode (dump.keep: none | failing) plans no attribution
            return None
        decisions = plan_decisions(stage_plan, self.exp.cache, self.exp.scope, only=[sid])
        outcomes = run_plan(
            stage_plan,
            self.exp.cache,
            self.exp.scope,
            decisions,
            jobs=self.jobs,
            reporter=self.reporter,
            experiment=self.exp.name,
        )
        self._tally(outcomes)
        entry = outcomes[sid].entry
        if entry is None:
            return None
        doc = read_json(entry.file("attribution.json"))
        return None if doc.get("unavailable") else local_errors(doc, self.exp)

    def _output_error(self, compare: dict[str, Any]) -> float:
        from layerscope.runner.jsonio import as_float

        noise = signal = 0.0
        for layer in compare["layers"]:
            if layer["tensor"] not in self.targets:
                continue
            m = layer["metrics"]
            if m["nonfinite_introduced"]:
                return math.inf
            n = m["elements"]
            rmse = as_float(m["rmse"])
            noise += rmse * rmse * n
            sqnr = as_float(m["sqnr_db"])
            # signal power from SQNR and noise: sum r^2 = noise * 10^(SQNR/10) (when both are finite)
            if math.isfinite(sqnr) and rmse > 0:
                signal += rmse * rmse * n * 10 ** (sqnr / 10)
        if noise == 0:
            return 0.0
        return noise / signal if signal > 0 else math.inf

    def evaluate(self, pinned: Iterable[str], *, full: bool = False) -> Evaluation:
        """The experiment's thresholds with these layers pinned (in addition to the run's own pins), on the
        watched layers (``full``, or nothing watched yet: on every compared layer)."""
        from layerscope.pipelines.metrics.limits import check

        pins = tuple(sorted(set(pinned) | set(self.run.pinned)))
        compared = set(self.exp.tensors)
        if full or self.watched is None:
            tensors: tuple[str, ...] = tuple(self.exp.tensors)
        else:
            tensors = self.watched
        key = (pins, tensors)
        if key in self._evaluations:
            return self._evaluations[key]
        every = self._evaluations.get((pins, tuple(self.exp.tensors)))
        if every is not None:  # judged on everything already: the watched verdict is a part of it
            return self._part(every, tensors)
        (doc,) = self._execute([self._variant(pins, tensors)])
        producer = self.exp.model.summary.producer_of()
        failing: list[tuple[str, str]] = []
        for layer in doc["layers"]:
            if layer["tensor"] not in compared:
                continue  # a target tensor the experiment does not compare: read for the output error only
            node = producer[layer["tensor"]].name if layer["tensor"] in producer else layer["tensor"]
            if check(layer["metrics"], self.exp.thresholds.for_layer(node)):
                failing.append((layer["node"], layer["tensor"]))
        result = Evaluation(
            pins,
            not failing,
            len(failing),
            failing[0][0] if failing else None,
            self._output_error(doc),
            failing_tensors=tuple(t for _, t in failing),
            watched=len([t for t in tensors if t in compared]),
        )
        self._evaluations[key] = result
        return result

    def _part(self, every: Evaluation, tensors: tuple[str, ...]) -> Evaluation:
        watched = set(tensors)
        failing = tuple(t for t in every.failing_tensors if t in watched)
        producer = self.exp.model.summary.producer_of()
        first = (producer[failing[0]].name if failing[0] in producer else failing[0]) if failing else None
        return replace(
            every,
            passed=not failing,
            failing=len(failing),
            first_failing=first,
            failing_tensors=failing,
            watched=len(watched & set(self.exp.tensors)),
        )

    # -- ranking --------------------------------------------------------------------------------------
    def eligible(self) -> list[str]:
        """Layers that can be pinned: float outputs, not already pinned, not Constants; network order."""
        summary = self.exp.model.summary
        return [
            n.name
            for n in summary.nodes
            if n.op_type != "Constant" and summary.float_outputs(n) and n.name not in self.run.pinned
        ]

    def candidates(self, attribution: Mapping[str, LocalError] | None = None) -> tuple[list[str], list[str]]:
        """The eligible layers in the order the search tries them (at most ``max_candidates``), and notes."""
        eligible = self.eligible()
        notes = []
        if attribution:
            ranked = rank(eligible, attribution, self._order)
        else:
            ranked = eligible
        if len(ranked) > self.max_candidates:
            how = "largest local error (error attribution)" if attribution else "first in network order"
            notes.append(f"{len(ranked)} layers can be pinned; the {self.max_candidates} with the {how} are ranked")
            ranked = ranked[: self.max_candidates]
        return ranked, notes

    def ranking_rows(self, layers: Sequence[str], errors: Mapping[str, LocalError]) -> list[dict[str, Any]]:
        rows = []
        for layer in layers:
            e = errors.get(layer)
            rows.append(
                {
                    "layer": layer,
                    "local_fails": e.fails if e else None,
                    "local_sqnr_db": e.sqnr_db if e else None,
                    "local_mse": e.power if e else None,
                }
            )
        return rows

    def sensitivity(self, layers: Sequence[str]) -> list[dict[str, Any]]:
        """Fallback ranking without attribution: pin only this layer / lower only this layer (2N+1 passes)."""
        all_nodes = [n.name for n in self.exp.model.summary.nodes]
        base = [self._variant(self.run.pinned, self.targets)]
        pin_one = [self._variant({*self.run.pinned, layer}, self.targets) for layer in layers]
        lower_one = [self._variant(set(all_nodes) - {layer}, self.targets) for layer in layers]
        self.log(f"sensitivity: {2 * len(layers) + 1} configurations on {', '.join(self.targets)}")
        docs = self._execute(base + pin_one + lower_one)
        base_error = self._output_error(docs[0])
        rows: list[dict[str, Any]] = []
        for i, layer in enumerate(layers):
            pinned_error = self._output_error(docs[1 + i])
            alone_error = self._output_error(docs[1 + len(layers) + i])
            if math.isinf(base_error) and math.isfinite(pinned_error):
                gain = math.inf
            elif math.isinf(base_error):
                gain = 0.0
            else:
                gain = base_error - pinned_error
            rows.append(
                {
                    "layer": layer,
                    "pin_gain": gain,
                    "error_pinned": pinned_error,
                    "error_alone": alone_error,
                    "base_error": base_error,
                }
            )
        rows.sort(key=lambda r: (-r["pin_gain"], -r["error_alone"]))
        return rows

    # -- search ---------------------------------------------------------------------------------------
    def search(self, attribution: Mapping[str, LocalError] | None = None) -> SearchResult:
        """Baseline, ranking, then the shortest passing prefix shrunk to a minimal set, confirmed on every
        compared layer. ``attribution`` (per node) is read from the run's attribution stage when not given."""
        base = self.evaluate((), full=True)
        result = SearchResult(self.run.name, self.run.pinned, self.targets, (), [])
        self._step(result, "baseline", base)
        if base.passed:
            result.found, result.minimal = (), True
            result.cost = self.cost
            return result
        errors = attribution if attribution is not None else self.attribution()
        layers, notes = self.candidates(errors)
        result.candidates, result.notes = tuple(layers), notes
        if errors:
            ranked = layers
            result.sensitivity = self.ranking_rows(layers, errors)
            roots = sum(1 for x in layers if x in errors and errors[x].fails)
        else:
            why = "off (attribution: false)" if not self.exp.attribution else "unavailable"
            result.notes.append(f"attribution is {why}: layers ranked by sensitivity, 2 passes per candidate")
            result.ranked_by = "sensitivity"
            result.sensitivity = self.sensitivity(layers)
            ranked = [r["layer"] for r in result.sensitivity]
            roots = 0
        self.log(
            f"ranked {len(ranked)} layers by {result.ranked_by}"
            + (f"; {roots} fail locally (root causes)" if result.ranked_by == "attribution" else "")
        )
        # tries judge only the layers that failed and the targets; the end result is confirmed on everything
        self.watched = tuple(dict.fromkeys([*base.failing_tensors, *(t for t in self.targets)]))
        self.log(f"each try compares {len(self.watched)} of {len(self.exp.tensors)} tensors")
        for attempt in range(3):
            chosen, verified = self._shrink(result, ranked, self._prefix(result, ranked, roots))
            if chosen is None:
                break
            final = self.evaluate(chosen, full=True)
            self._step(result, f"confirm on all {len(self.exp.tensors)} compared tensors", final)
            if final.passed:
                result.found = tuple(sorted(chosen, key=ranked.index))
                result.minimal = verified
                if not verified:
                    result.notes.append(
                        "each layer's removal was tried once; some were tried before a later removal, against a "
                        "larger set: the set is minimal if pinning more layers never hurts"
                    )
                break
            if attempt == 0 and self.watched is not None:  # watch what failed too, and search again
                result.notes.append(
                    f"pinning {len(chosen)} layers made {final.first_failing} fail: searched again watching it too"
                )
                self.watched = tuple(dict.fromkeys([*self.watched, *final.failing_tensors]))
            elif attempt == 1 and self.watched is not None:
                result.notes.append("the set failed again elsewhere: searched again with every compared layer judged")
                self.watched = None
            else:
                break
        result.cost = self.cost
        return result

    def _prefix(self, result: SearchResult, ranked: list[str], roots: int) -> list[str] | None:
        """The shortest passing prefix of ``ranked`` (doubling from the root causes, then bisection)."""
        lo, hi, size = 0, None, max(1, min(roots, len(ranked)))
        while size <= len(ranked):
            ev = self.evaluate(ranked[:size])
            self._step(result, f"pin the first {size} ranked", ev)
            if ev.passed:
                hi = size
                break
            lo, size = size, size * 2
        if hi is None:
            if lo == len(ranked):
                return None
            ev = self.evaluate(ranked)
            self._step(result, f"pin all {len(ranked)} candidates", ev)
            if not ev.passed:
                return None
            hi = len(ranked)
        if lo == 0 and hi == roots:
            return list(ranked[:hi])  # the root causes pass: the shrink tells which of them are needed
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ev = self.evaluate(ranked[:mid])
            self._step(result, f"pin the first {mid} ranked", ev)
            lo, hi = (lo, mid) if ev.passed else (mid, hi)
        return list(ranked[:hi])

    def _shrink(
        self, result: SearchResult, ranked: list[str], chosen: list[str] | None
    ) -> tuple[list[str] | None, bool]:
        """Drop layers, least useful (last ranked) first, while the thresholds pass: each layer is tried once.
        Returns the set and whether it is verified minimal (every kept layer's removal failed against the final
        set; a layer kept before a later removal was tested against a larger set, which proves minimality only
        if pinning more layers never hurts: re-testing it would cost a pass per kept layer per removal)."""
        if chosen is None:
            return None, False
        kept_against: dict[str, frozenset[str]] = {}
        for layer in sorted(chosen, key=ranked.index, reverse=True):
            trial = [x for x in chosen if x != layer]
            ev = self.evaluate(trial)
            self._step(result, f"without {layer}", ev)
            if ev.passed:
                chosen = trial
            else:
                kept_against[layer] = frozenset(chosen)
        final = frozenset(chosen)
        return chosen, all(kept_against.get(x) == final for x in chosen)

    def _step(self, result: SearchResult, action: str, ev: Evaluation) -> None:
        extra = tuple(p for p in ev.pinned if p not in self.run.pinned)
        result.steps.append(
            {
                "action": action,
                "pinned": list(extra),
                "size": len(extra),
                "passed": ev.passed,
                "failing_layers": ev.failing,
                "first_failing": ev.first_failing,
                "output_sqnr_db": ev.output_sqnr_db,
                "tensors_judged": ev.watched,
            }
        )
        verdict = "PASS" if ev.passed else f"{ev.failing} layers fail"
        c = self.cost
        self.log(f"{action}: {len(extra)} pinned -> {verdict}  [{c.inference_runs} inference passes so far]")
