"""Which layers must stay FP32: sensitivity ranking and a search for a small, minimal set to pin.

Every candidate configuration is an ordinary variant of the experiment (the same run with other layers
pinned) whose build, dump and compare stages go through the artifact cache, so a second search, or a search
after a run, reuses everything already computed. Nothing edits the user's config: the result is an
``overrides`` snippet to paste.

* **Sensitivity**, per candidate layer, on the target tensors (the graph outputs unless ``--target``):
  *pin only this layer* (everything else at the run's precision) — how much the output error drops — and
  *lower only this layer* (everything else FP32) — how much error this layer alone causes. Output error is
  the noise-to-signal power ratio over the targets; non-finite values introduced count as infinite.
* **Search**: with the layers ranked by how much pinning each alone helps, the shortest passing prefix of
  the ranking is found by doubling then bisection (each step a full evaluation against every threshold),
  then layers are dropped one at a time, least useful first, while the thresholds still pass, until no
  single layer can be removed: the set is minimal in that sense (not necessarily the smallest possible).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import StageError, UsageError
from layerscope.runner.hashing import digest

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment
    from layerscope.runner.execute import Reporter


@dataclass(frozen=True)
class Evaluation:
    pinned: tuple[str, ...]
    passed: bool
    failing: int
    first_failing: str | None
    output_error: float  # noise-to-signal power ratio over the target tensors (inf: non-finite introduced)
    why: str = ""

    @property
    def output_sqnr_db(self) -> float:
        if self.output_error == 0:
            return math.inf
        return -10 * math.log10(self.output_error) if math.isfinite(self.output_error) else -math.inf


@dataclass
class Cost:
    ran: int = 0
    cached: int = 0
    inference_runs: int = 0  # dump stages that actually ran (each: every sample through one model)


@dataclass
class SearchResult:
    run: str
    base_pinned: tuple[str, ...]
    targets: tuple[str, ...]
    candidates: tuple[str, ...]
    sensitivity: list[dict[str, Any]]
    steps: list[dict[str, Any]] = field(default_factory=list)
    found: tuple[str, ...] | None = None
    minimal: bool = False
    cost: Cost = field(default_factory=Cost)
    notes: list[str] = field(default_factory=list)


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
        self._evaluations: dict[tuple[str, ...], Evaluation] = {}

    # -- running variants through the cache -----------------------------------------------------------
    def _variant(self, pinned: Iterable[str], tensors: Sequence[str]) -> Experiment:
        order = {n.name: n.index for n in self.exp.model.summary.nodes}
        pins = tuple(sorted(set(pinned), key=lambda n: order.get(n, 0)))
        label = f"{self.run.name}~{len(pins)}:{digest(pins)[:8]}"
        run = replace(self.run, name=label, pinned=pins)
        runs = {self.exp.reference: self.exp.runs[self.exp.reference], label: run}
        return replace(self.exp, runs=runs, candidates=(label,), tensors=tuple(tensors), attribution=False)

    def _execute(self, variants: list[Experiment]) -> list[dict[str, Any]]:
        """Run the variants' stages (shared ones once) and return each variant's compare.json."""
        import json

        from layerscope.pipelines.stages import stages_for
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
        for o in outcomes.values():
            if o.status == "ran":
                self.cost.ran += 1
                self.cost.inference_runs += o.sid.startswith("dump[")
            elif o.status == "cached":
                self.cost.cached += 1
        docs = []
        for v in variants:
            entry = outcomes[f"compare[{v.candidates[0]}]"].entry
            assert entry is not None
            docs.append(json.loads(entry.file("compare.json").read_text()))
        return docs

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

    def evaluate(self, pinned: Iterable[str]) -> Evaluation:
        """All thresholds of the experiment with these layers pinned (in addition to the run's own pins)."""
        from layerscope.pipelines.metrics.limits import check

        pins = tuple(sorted(set(pinned) | set(self.run.pinned)))
        if pins in self._evaluations:
            return self._evaluations[pins]
        (doc,) = self._execute([self._variant(pins, self.exp.tensors)])
        producer = self.exp.model.summary.producer_of()
        failing = []
        for layer in doc["layers"]:
            node = producer[layer["tensor"]].name if layer["tensor"] in producer else layer["tensor"]
            if check(layer["metrics"], self.exp.thresholds.for_layer(node)):
                failing.append(layer["node"])
        result = Evaluation(pins, not failing, len(failing), failing[0] if failing else None, self._output_error(doc))
        self._evaluations[pins] = result
        return result

    # -- sensitivity ----------------------------------------------------------------------------------
    def candidates(self, attribution: dict[str, float] | None = None) -> tuple[list[str], list[str]]:
        """Layers that can be pinned (float outputs, not already pinned, not Constants), and notes."""
        summary = self.exp.model.summary
        eligible = [
            n.name
            for n in summary.nodes
            if n.op_type != "Constant" and summary.float_outputs(n) and n.name not in self.run.pinned
        ]
        notes = []
        if len(eligible) > self.max_candidates:
            if attribution:
                eligible.sort(key=lambda n: -attribution.get(n, 0.0))
                notes.append(
                    f"{len(eligible)} layers can be pinned; the {self.max_candidates} with the largest local "
                    "error (error attribution) are ranked"
                )
            else:
                notes.append(f"{len(eligible)} layers can be pinned; the first {self.max_candidates} are ranked")
            order = {n.name: n.index for n in summary.nodes}
            eligible = sorted(eligible[: self.max_candidates], key=lambda n: order[n])
        return eligible, notes

    def sensitivity(self, layers: Sequence[str]) -> list[dict[str, Any]]:
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
    def search(self, attribution: dict[str, float] | None = None) -> SearchResult:
        layers, notes = self.candidates(attribution)
        result = SearchResult(self.run.name, self.run.pinned, self.targets, tuple(layers), [], notes=notes)
        base = self.evaluate(())
        self._step(result, "baseline", base)
        if base.passed:
            result.found, result.minimal = (), True
            result.cost = self.cost
            return result
        result.sensitivity = self.sensitivity(layers)
        ranked = [r["layer"] for r in result.sensitivity]
        # shortest passing prefix: doubling, then bisection (pinning more layers rarely hurts)
        lo, hi, size = 0, None, 1
        while size <= len(ranked):
            ev = self.evaluate(ranked[:size])
            self._step(result, f"pin the {size} most sensitive", ev)
            if ev.passed:
                hi = size
                break
            lo, size = size, size * 2
        if hi is None:
            ev = self.evaluate(ranked)
            self._step(result, f"pin all {len(ranked)} candidates", ev)
            if not ev.passed:
                result.cost = self.cost
                return result
            hi = len(ranked)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ev = self.evaluate(ranked[:mid])
            self._step(result, f"pin the {mid} most sensitive", ev)
            lo, hi = (lo, mid) if ev.passed else (mid, hi)
        chosen = list(ranked[:hi])
        # minimality: drop layers, least useful first, while the thresholds still pass
        changed = True
        while changed and chosen:
            changed = False
            for layer in sorted(chosen, key=lambda x: ranked.index(x), reverse=True):
                trial = [x for x in chosen if x != layer]
                ev = self.evaluate(trial)
                self._step(result, f"without {layer}", ev)
                if ev.passed:
                    chosen = trial
                    changed = True
                    break
        result.found = tuple(sorted(chosen, key=lambda x: ranked.index(x)))
        result.minimal = True
        result.cost = self.cost
        return result

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
            }
        )
        self.log(f"{action}: {len(extra)} pinned -> {'PASS' if ev.passed else f'{ev.failing} layers fail'}")
