"""Which layers must stay FP32: a ranking from attribution and a search for a small set to pin, within a budget.

Every candidate configuration is the same run with other layers pinned; its build goes through the artifact
cache, and tries are judged by trial stages (:mod:`..stages.trial`) that read the reference's values from
attribution's dump (or run the reference once per batch of variants) and accumulate only what each compared
tensor's verdict reads, without dumping anything, so a second search reuses every build and every batch.
Nothing edits the user's config: the result is an ``overrides`` snippet to paste.

* **Ranking** (:mod:`.ranking`): attribution's local error, the layers that fail locally (root causes) first.
  Only when attribution is off or unavailable does the search fall back to *sensitivity*, two configurations
  per candidate (pin only this layer; lower only this layer), which costs 2N+1 inference passes.
* **Every try judges every compared layer** (a variant that fails for sure may leave the rest unjudged: its
  failing count is then a floor), so no watched subset, no confirmation that can fail elsewhere.
* **Search**: the shortest passing prefix of the ranking (the root causes alone; then the sizes doubling, in one
  batch; then the interval split in quarters per batch); then a shrink that removes groups of neighbouring
  layers in batches (delta debugging) while the budget of ``max_tries`` pinned sets lasts. The issue's bound is
  a set within 2x of the smallest, not a proof: ``minimal`` is claimed only when every kept layer's removal
  failed against the final set; ``prove_minimal`` goes on with drop-one rounds (:meth:`Search._shrink`) until
  that holds, whatever the budget.
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
    from layerscope.runner.graph import Stage


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
    unjudged: int = 0  # compared tensors left unjudged once the variant failed for sure: ``failing`` is a floor

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


BATCH = 16  # variants per trial stage at most: their sessions are open together
# Pinned sets tried by a search (the baseline and the prefix search included) before the shrink stops without
# proving the set minimal; about one inference pass each, so that a search with attribution stays near 30 passes.
TRIES = 24


def batch_size(per_variant: int, available: int | None) -> int:
    """Variants per trial stage: :data:`BATCH`, fewer when that many open sessions (each ``per_variant`` bytes
    at its peak, the run's memory estimate) would take more than half the memory available now."""
    if available is None or per_variant <= 0:
        return BATCH
    return max(1, min(BATCH, available // 2 // per_variant))


def builds_for(exp: Experiment) -> list[Stage]:
    """The build stages (and the calibration a quantized run needs) of the reference and the candidate: only
    these, not the whole plan of the variant (making its other stages costs time on every try)."""
    from layerscope.pipelines.lowering.formats import FORMATS
    from layerscope.pipelines.stages import build, calibrate

    used = [exp.runs[name] for name in (exp.reference, *exp.candidates)]
    stages = [calibrate.make(exp)] if any(FORMATS[r.precision].quantized for r in used) else []
    for run in used:
        stages.append(build.make(exp, run, calibrate.STAGE_ID if FORMATS[run.precision].quantized else None))
    return stages


class Search:
    def __init__(
        self,
        exp: Experiment,
        run: str,
        *,
        targets: Sequence[str] | None = None,
        max_candidates: int = 64,
        max_tries: int = TRIES,
        prove_minimal: bool = False,
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
        self.max_tries = max_tries
        self.prove_minimal = prove_minimal
        self._ranking_tries = 0  # sets tried to rank by sensitivity (without attribution)
        self._evaluations: dict[tuple[str, ...], Evaluation] = {}  # by pinned set: every try is judged in full
        self._size: int | None = None  # variants per trial stage (:func:`batch_size`), decided at the first try
        self._order = {n.name: n.index for n in exp.model.summary.nodes}
        self._passes: dict[str, int] = {}  # trial stage -> its inference passes
        # the reference's dump (attribution's), once attribution ran: tries read the reference's values there
        self.reference_dump: Stage | None = None

    # -- running variants through the cache -----------------------------------------------------------
    def _variant(self, pins: tuple[str, ...]) -> Experiment:
        """The experiment with only the reference and the candidate pinned at ``pins`` (the run's name says which)."""
        label = f"{self.run.name}~{len(pins)}:{digest(pins)[:8]}"
        run = replace(self.run, name=label, pinned=pins)
        runs = {self.exp.reference: self.exp.runs[self.exp.reference], label: run}
        tensors = tuple(dict.fromkeys([*self.exp.tensors, *self.targets]))
        return replace(self.exp, runs=runs, candidates=(label,), tensors=tensors, attribution=False)

    def _tally(self, outcomes: Mapping[str, Outcome]) -> None:
        for o in outcomes.values():
            if o.status == "ran":
                self.cost.ran += 1
                # attribution runs every layer once over the samples: as much inference as a dump
                self.cost.inference_runs += o.sid.startswith(("dump[", "attribute["))
                self.cost.inference_runs += 2 * o.sid.startswith("stream[")  # (dump.keep: none) runs both models
                self.cost.inference_runs += self._passes.get(o.sid, 0)  # trials: each variant (+ the reference)
            elif o.status == "cached":
                self.cost.cached += 1

    def _batch_size(self) -> int:
        from layerscope.pipelines.experiment.budget import estimate
        from layerscope.runner.resources import available_memory

        if self._size is None:
            self._size = batch_size(estimate(self.exp).memory, available_memory())
            if self._size < BATCH:
                self.log(f"trial stages of {self._size} variants (not {BATCH}), for the memory available now")
        return self._size

    def _execute(self, pin_sets: Sequence[tuple[str, ...]]) -> list[dict[str, Any]]:
        """Each pinned variant's compare.json, on every compared tensor and the targets, from trial stages
        (the reference run once per batch of up to ``BATCH`` variants; the builds and trials through the cache)."""
        from layerscope.pipelines.stages import build, trial
        from layerscope.runner.execute import plan_decisions, run_plan
        from layerscope.runner.graph import Plan
        from layerscope.runner.jsonio import read_json

        stages: dict[str, Any] = {}
        batches: list[tuple[str, int]] = []  # per variant: its trial stage, its index there
        variants = [self._variant(pins) for pins in pin_sets]
        size = self._batch_size()
        for start in range(0, len(variants), size):
            chunk = variants[start : start + size]
            for v in chunk:
                for s in builds_for(v):
                    stages.setdefault(s.id, s)
            runs = [v.runs[v.candidates[0]] for v in chunk]
            ref_dump = None
            if self.reference_dump is not None and set(chunk[0].tensors) == set(self.exp.tensors):
                stages.setdefault(self.reference_dump.id, self.reference_dump)
                ref_dump = self.reference_dump.id
            t = trial.make(
                chunk[0],
                self.exp.runs[self.exp.reference],
                runs,
                build.stage_id(self.exp.reference),
                [build.stage_id(r.name) for r in runs],
                ref_dump,
                targets=self.targets,
                judged=self.exp.tensors,
            )
            stages[t.id] = t
            self._passes[t.id] = trial.inference_passes(runs, ref_dump)
            batches += [(t.id, i) for i in range(len(chunk))]
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
        for sid, i in batches:
            entry = outcomes[sid].entry
            assert entry is not None
            docs.append(read_json(entry.file(trial.file_name(i))))
        return docs

    def attribution(self) -> dict[str, LocalError] | None:
        """Each layer's local error from the run's attribution stage (run, or from the cache); None when
        attribution is off, or failed (the search then ranks by sensitivity and says why)."""
        from layerscope.pipelines.stages import dump, plan_for
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
        ref_dump = dump.stage_id(self.exp.reference)
        if outcomes.get(ref_dump) is not None and outcomes[ref_dump].status in ("ran", "cached"):
            self.reference_dump = stage_plan.stages[ref_dump].stage
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

    def _pins(self, pinned: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(set(pinned) | set(self.run.pinned), key=lambda n: (self._order.get(n, 0), n)))

    def evaluate(self, pinned: Iterable[str], *, full: bool = True) -> Evaluation:
        """The experiment's thresholds with these layers pinned (in addition to the run's own pins), judged on
        every compared layer (``full`` is accepted for callers of the watched-set search; every try is full)."""
        (ev,) = self.evaluate_many([pinned])
        return ev

    def evaluate_many(self, pin_sets: Sequence[Iterable[str]]) -> list[Evaluation]:
        """:meth:`evaluate` for several sets, the ones not judged yet in as few trial stages as the batch allows."""
        keys = [self._pins(p) for p in pin_sets]
        todo = list(dict.fromkeys(k for k in keys if k not in self._evaluations))
        if todo:
            for pins, doc in zip(todo, self._execute(todo), strict=True):
                self._evaluations[pins] = self._judge(pins, doc)
        return [self._evaluations[k] for k in keys]

    def _judge(self, pins: tuple[str, ...], doc: dict[str, Any]) -> Evaluation:
        from layerscope.pipelines.metrics.limits import check

        compared = set(self.exp.tensors)
        producer = self.exp.model.summary.producer_of()
        failing: list[tuple[str, str]] = []
        unjudged = 0
        for layer in doc["layers"]:
            if layer["tensor"] not in compared:
                continue  # a target tensor the experiment does not compare: read for the output error only
            if layer.get("stopped") == "variant fails":
                unjudged += 1  # left once another tensor of the variant failed for sure
                continue
            node = producer[layer["tensor"]].name if layer["tensor"] in producer else layer["tensor"]
            if check(layer["metrics"], self.exp.thresholds.for_layer(node)):
                failing.append((layer["node"], layer["tensor"]))
        return Evaluation(
            pins,
            not failing,
            len(failing),
            failing[0][0] if failing else None,
            self._output_error(doc),
            failing_tensors=tuple(t for _, t in failing),
            watched=len(compared),
            unjudged=unjudged,
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
        pin_one = [[layer] for layer in layers]
        lower_one = [set(all_nodes) - {layer} for layer in layers]
        self.log(f"sensitivity: {2 * len(layers) + 1} configurations on {', '.join(self.targets)}")
        evs = self.evaluate_many([[], *pin_one, *lower_one])
        base_error = evs[0].output_error
        rows: list[dict[str, Any]] = []
        for i, layer in enumerate(layers):
            pinned_error = evs[1 + i].output_error
            alone_error = evs[1 + len(layers) + i].output_error
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
        """Baseline, ranking, then the shortest passing prefix shrunk to a minimal set; every try is judged on
        every compared layer. ``attribution`` (per node) is read from the run's attribution stage when not given."""
        base = self.evaluate(())
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
            before = len(self._evaluations)
            result.sensitivity = self.sensitivity(layers)
            self._ranking_tries = len(self._evaluations) - before  # not counted in max_tries
            ranked = [r["layer"] for r in result.sensitivity]
            roots = 0
        self.log(
            f"ranked {len(ranked)} layers by {result.ranked_by}"
            + (f"; {roots} fail locally (root causes)" if result.ranked_by == "attribution" else "")
        )
        chosen, verified = self._reduce(result, ranked, self._prefix(result, ranked, roots))
        if chosen is not None and not verified and self.prove_minimal:
            chosen, verified = self._shrink(result, ranked, chosen)
        if chosen is not None:
            result.found = tuple(sorted(chosen, key=ranked.index))
            result.minimal = verified
            if not verified:
                result.notes.append(
                    f"not proven minimal: the search stopped after {self.tries()} tries (at most "
                    f"{self.max_tries}); proving it (removing each pinned layer in turn) costs at least "
                    f"{len(chosen)} more inference passes (--prove-minimal)"
                )
        result.cost = self.cost
        return result

    def _prefix(self, result: SearchResult, ranked: list[str], roots: int) -> list[str] | None:
        """The shortest passing prefix of ``ranked``: the root causes alone, then the sizes doubling from there
        up to all the candidates in one batch (without root causes: all in one batch), then the interval between
        the last failing and the first passing size split in quarters per batch."""
        first = max(1, min(roots, len(ranked)))
        sizes = []
        size = first
        while size < len(ranked):
            sizes.append(size)
            size *= 2
        sizes.append(len(ranked))
        lo, hi = 0, None
        # With root causes the ranking is usually right and they alone pass: try them first, on their own.
        for batch in [sizes[:1], sizes[1:]] if roots else [sizes]:
            for size, ev in zip(batch, self.evaluate_many([ranked[:n] for n in batch]), strict=True):
                self._step(result, f"pin the first {size} ranked", ev)
                if ev.passed:
                    hi = size
                    break
                lo = size
            if hi is not None:
                break
        if hi is None:
            return None
        if hi == first:
            return list(ranked[:hi])  # the first size passes: the shrink tells which of them are needed
        while hi - lo > 1:
            step = max(1, (hi - lo) // 4)
            mids = list(range(lo + step, hi, step))[:3]
            for mid, ev in zip(mids, self.evaluate_many([ranked[:n] for n in mids]), strict=True):
                self._step(result, f"pin the first {mid} ranked", ev)
                if ev.passed:
                    hi = min(hi, mid)
                elif mid < hi:
                    lo = max(lo, mid)
        return list(ranked[:hi])

    def _reduce(
        self, result: SearchResult, ranked: list[str], chosen: list[str] | None
    ) -> tuple[list[str] | None, bool]:
        """Drop layers while the thresholds pass, within the budget of tries (delta debugging): the set split into
        n groups of neighbours in the ranking (least useful first), each group's removal tried, all in one batch;
        the largest removal that passes is kept and the rest split again, else n doubles. When n reaches the
        set's size and no single removal passes, the set is proven minimal; when the budget ends first, it is
        not (``False``: the caller may prove it with :meth:`_shrink`)."""
        if chosen is None:
            return None, False
        n = 2
        while chosen:
            n = min(n, len(chosen))
            order = sorted(chosen, key=ranked.index, reverse=True)  # least useful first
            groups = [order[len(order) * j // n : len(order) * (j + 1) // n] for j in range(n)]
            left = self.max_tries - self.tries()
            if left <= 0:
                return chosen, False
            tried = groups[:left]
            evs = self.evaluate_many([[x for x in chosen if x not in g] for g in tried])
            for g, ev in zip(tried, evs, strict=True):
                self._step(
                    result, f"without {g[0]}" if len(g) == 1 else f"without {len(g)} layers ({', '.join(g)})", ev
                )
            passing = [
                (-len(g), ev.output_error, i) for i, (g, ev) in enumerate(zip(tried, evs, strict=True)) if ev.passed
            ]
            if passing:
                gone = tried[min(passing)[2]]
                chosen = [x for x in chosen if x not in gone]
                n = max(2, n - 1)
            elif n == len(chosen) and len(tried) == n:
                return chosen, True  # every single removal failed against this very set
            elif n == len(chosen):
                return chosen, False  # the budget ended within the drop-one round
            else:
                n = min(2 * n, len(chosen))
        return chosen, True

    def tries(self) -> int:
        """Pinned sets judged so far, those tried to rank by sensitivity left out (the budget ``max_tries``)."""
        return len(self._evaluations) - self._ranking_tries

    def _shrink(
        self, result: SearchResult, ranked: list[str], chosen: list[str] | None
    ) -> tuple[list[str] | None, bool]:
        """Drop layers while the thresholds pass. Each round tries every drop-one set in one batch (independent
        given the current set); when several can go, the least harmful of them (by the output error of their
        removal alone) are dropped together (all, 2/3, half, a third, a sixth of them, in one more batch), the
        largest passing group wins, and the other removable layers are tried one at a time on top of it. Ends
        when no single removal passes: that round proves the set minimal (each kept layer's removal failed
        against this very set)."""
        if chosen is None:
            return None, False
        while chosen:
            drops = sorted(chosen, key=ranked.index, reverse=True)  # least useful first
            evs = self.evaluate_many([[x for x in chosen if x != layer] for layer in drops])
            for layer, ev in zip(drops, evs, strict=True):
                self._step(result, f"without {layer}", ev)
            # the layers whose removal alone passes, the least harmful first (their removal's output error)
            alone = sorted((ev.output_error, i) for i, ev in enumerate(evs) if ev.passed)
            removable = [drops[i] for _, i in alone]
            if not removable:
                return chosen, True
            gone = removable[:1]
            sizes = sorted({n for n in (len(removable) * k // 6 for k in (6, 4, 3, 2, 1)) if n > 1}, reverse=True)
            groups = [removable[:n] for n in sizes]
            if groups:
                trials = self.evaluate_many([[x for x in chosen if x not in g] for g in groups])
                for g, ev in zip(groups, trials, strict=True):
                    self._step(result, f"without {len(g)} layers ({', '.join(g)})", ev)
                gone = next((g for g, ev in zip(groups, trials, strict=True) if ev.passed), gone)
            # the rest one at a time, cumulatively: where removals share an error budget (each passes alone, a
            # few together fail), this keeps what fits instead of one layer per round
            for layer in removable:
                if layer in gone:
                    continue
                ev = self.evaluate([x for x in chosen if x not in gone and x != layer])
                self._step(result, f"without {layer} too", ev)
                if ev.passed:
                    gone = [*gone, layer]
            chosen = [x for x in chosen if x not in gone]
        return chosen, True

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
                "tensors_judged": ev.watched - ev.unjudged,
            }
        )
        verdict = "PASS" if ev.passed else f"{'at least ' if ev.unjudged else ''}{ev.failing} layers fail"
        c = self.cost
        self.log(f"{action}: {len(extra)} pinned -> {verdict}  [{c.inference_runs} inference passes so far]")
