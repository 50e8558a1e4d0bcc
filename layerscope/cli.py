"""The command line: ``main(argv) -> exit code``. A thin shell over :mod:`layerscope.api`: parse, call, print.

User errors print one message (``-v`` adds the traceback) and return their exit code; an unexpected
exception is reported as a bug with exit code 3. Heavy modules are imported by the commands that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from layerscope._version import __version__
from layerscope.cli_cache import cmd_cache, default_cache_dir
from layerscope.runner.errors import (
    EXIT_OK,
    EXIT_STAGE,
    EXIT_THRESHOLD,
    EXIT_USAGE,
    LayerscopeError,
    RunError,
    SpecError,
    UsageError,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits with 2 by itself; keep it inside main()
        # main() prefixes every message with "layerscope: "; a subcommand's name is worth keeping.
        where = self.prog.removeprefix("layerscope").strip()
        hint = f"see `{self.prog} --help`"
        extras = message.removeprefix("unrecognized arguments: ").split()
        if message.startswith("unrecognized arguments") and all(x.endswith((".yaml", ".yml")) for x in extras):
            hint = "each command takes one CONFIG: run one command per config"
        raise UsageError(f"{where}: {message}" if where else message, hint=hint)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="layerscope", description="Per-layer accuracy of reduced-precision inference against FP32.")
    p.add_argument("--version", action="version", version=f"layerscope {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and stage details")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def config_cmd(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("config", help="experiment YAML")
        _set_arg(c, "override a config value before validation (repeatable; ~KEY.PATH removes a key)")
        c.add_argument(
            "--cache-dir",
            help="artifact cache (default: $LAYERSCOPE_CACHE_DIR, the config's cache.dir, or the user cache directory)",
        )
        c.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
        return c

    config_cmd("validate", "check a config against the schema and the model; print every problem")
    for name, help in (
        ("plan", "print the stages and whether each is cached or must run, and why"),
        ("run", "run the experiment: build, dump, compare, report"),
    ):
        c = config_cmd(name, help)
        c.add_argument(
            "--force",
            nargs="?",
            const="*",
            action="append",
            metavar="STAGE",
            help="rerun STAGE (id like dump[fp16], a kind like build, or a glob) and what depends "
            "on it; without STAGE, rerun everything",
        )
        c.add_argument("--only", action="append", metavar="STAGE", help="run only what STAGE needs (repeatable)")
        if name == "run":
            c.add_argument(
                "-j",
                "--jobs",
                type=int,
                default=None,
                help="stages to run in parallel (default: number of CPUs, at most 4)",
            )
            c.add_argument(
                "--no-cache",
                action="store_true",
                help="ignore the shared cache; keep this run's artifacts under OUT/artifacts",
            )
            c.add_argument("--out", help="output directory (default: the config's report.dir)")
            c.add_argument("-q", "--quiet", action="store_true", help="no progress or tables, only the verdict")
            c.add_argument(
                "--exit-zero",
                action="store_true",
                help="exit 0 when only a threshold failed (the verdict is in the report): for pipelines that "
                "track the result, like DVC; a failed stage or a bad config still exits 3 or 2",
            )
            _executor_args(c)
    sw = sub.add_parser(
        "sweep",
        help="run many experiments (configs × a matrix of --set overrides) as one graph; write a summary",
        description="Run every experiment of a sweep file (schemas/sweep.schema.json) as one graph: identical "
        "stages run once. Each experiment's report goes into its own folder of OUT, with sweep.json/.md/.html.",
    )
    sw.add_argument("sweep", help="sweep YAML")
    _set_arg(sw, "override a value in every experiment (repeatable)")
    sw.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    sw.add_argument("--cache-dir", help="artifact cache (as for run)")
    sw.add_argument("--out", help="output directory (default: the sweep's report.dir, or sweep-NAME)")
    sw.add_argument("-j", "--jobs", type=int, default=None, help="stages in parallel (default: CPUs, at most 4)")
    sw.add_argument("--force", nargs="?", const="*", action="append", metavar="STAGE", help="rerun STAGE (as for run)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress or table, only the verdict")
    _executor_args(sw)
    f = config_cmd("fix", "find a small set of layers to keep in FP32 so that the thresholds pass")
    f.add_argument("--run", required=True, help="the candidate run to fix")
    f.add_argument(
        "--target",
        action="append",
        metavar="TENSOR",
        help="tensor(s) whose error ranks the layers (default: the model's outputs)",
    )
    f.add_argument(
        "--candidates",
        type=int,
        default=64,
        metavar="N",
        help="rank at most N layers (the ones with the largest local error); default 64",
    )
    f.add_argument(
        "--max-tries",
        type=int,
        default=24,
        metavar="N",
        help="pinned sets to try at most before the shrink stops (about one inference pass each); default 24",
    )
    f.add_argument(
        "--prove-minimal",
        action="store_true",
        help="shrink until no single layer can be removed, whatever --max-tries (one pass per pinned layer more)",
    )
    f.add_argument("-j", "--jobs", type=int, default=None, help="stages in parallel (default: CPUs, at most 4)")
    f.add_argument("--out", help="where fix-RUN.yaml/.md/.json go (default: the config's report.dir)")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr, only the snippet on stdout")
    r = sub.add_parser("report", help="re-render a run directory or report.json without running anything")
    r.add_argument("path", help="run directory or report.json")
    r.add_argument("--format", choices=["table", "md", "json", "html"], default="table")
    r.add_argument(
        "-o",
        "--output",
        help="write to this file instead of standard output (`-o -`: standard output even when it is a terminal)",
    )
    r.add_argument(
        "--rows",
        type=int,
        default=None,
        metavar="N",
        help="table: at most N rows per comparison, failing and root-cause layers always (default 40; 0: all)",
    )
    r.add_argument("--all", action="store_true", help="table: every layer (same as --rows 0)")
    d = sub.add_parser(
        "diff",
        help="what changed between two reports, run directories, configs, or configs at a git revision",
        description="Compare A (before) with B (after). Each is a report.json, a run directory, a config file or "
        "REV:path/to/config.yaml (read with git; nothing is checked out). A config's report comes from the cache; "
        "missing stages run first.",
    )
    d.add_argument("old", metavar="A")
    d.add_argument("new", metavar="B")
    d.add_argument("--format", choices=["text", "md", "json"], default="text", help="md is ready to paste in a PR")
    d.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a verdict went from pass to fail or a metric got worse beyond the tolerance",
    )
    d.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[METRIC=]REL",
        help="how much worse a metric may get, relative (default 0.1 = 10%%; e.g. 0.05 or cosine=0.5; repeatable)",
    )
    d.add_argument(
        "--limit",
        type=int,
        default=20,
        help="layers shown per comparison in text/md, every regressed layer always (0: all)",
    )
    d.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value on both config sides (repeatable)",
    )
    d.add_argument("--set-a", action="append", default=[], metavar="KEY=VALUE", help="override on side A only")
    d.add_argument("--set-b", action="append", default=[], metavar="KEY=VALUE", help="override on side B only")
    d.add_argument("--cache-dir", help="artifact cache for config sides (as for run)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress while config sides run")
    e = sub.add_parser(
        "export",
        help="export a report: per-layer table (csv, parquet), DVC metrics and plots files, an MLflow run",
        description="csv/parquet: one row per comparison x layer, flat numeric columns (default: layers.csv / "
        "layers.parquet beside report.json; csv: -o - prints it). dvc: metrics.json (headline numbers, for "
        "`dvc metrics`) and layers.csv (for `dvc plots`) into a folder (default: dvc/ beside report.json). "
        "mlflow: headline metrics, verdict tags, the per-layer table and the report files logged to the active "
        "MLflow run, or a new one named after the experiment.",
    )
    e.add_argument("path", help="run directory or report.json")
    e.add_argument("--format", required=True, choices=["csv", "parquet", "dvc", "mlflow"])
    e.add_argument("-o", "--output", help="file (csv, parquet; csv: - for standard output) or folder (dvc)")
    e.add_argument("--tracking-uri", help="mlflow: the tracking URI (default: MLflow's, $MLFLOW_TRACKING_URI)")
    e.add_argument("--mlflow-experiment", metavar="NAME", help="mlflow: the MLflow experiment to log to")
    c = sub.add_parser("cache", help="inspect or clean the artifact cache")
    c.add_argument("action", choices=["ls", "gc", "clear"])
    c.add_argument("--cache-dir")
    c.add_argument("--max-size", help="gc: shrink the cache to this size (e.g. 20G, 500M), least recently used first")
    c.add_argument("--older-than", help="gc: remove entries unused for this long (e.g. 30d, 12h); ls: list only those")
    c.add_argument(
        "--kind",
        action="append",
        default=[],
        help="ls: only entries of this kind (build, dump, compare, attribute, report, ...; repeatable)",
    )
    c.add_argument("--experiment", metavar="NAME", help="ls: only entries of this experiment (a glob: 'unet*')")
    c.add_argument("--entries", action="store_true", help="ls: one row per entry instead of per experiment and run")
    c.add_argument("--dry-run", action="store_true", help="gc: say what would be removed")
    c.add_argument("-y", "--yes", action="store_true", help="clear: do not ask for confirmation")
    sub.add_parser("backends", help="list backends and whether they can run here")
    m = sub.add_parser("models", help="list or fetch the real trained models of the zoo")
    m.add_argument("action", choices=["list", "fetch"])
    m.add_argument("name", nargs="?")
    m.add_argument("--cache-dir")
    dt = sub.add_parser("data", help="list or fetch the real photos (permissively licensed) used by the demos")
    dt.add_argument("action", choices=["list", "fetch"])
    dt.add_argument("name", nargs="?")
    dt.add_argument("--cache-dir")
    return p


def _set_arg(c: argparse.ArgumentParser, help: str) -> None:
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE", help=help)


def _executor_args(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--executor",
        choices=["local", "dask"],
        default=None,
        help="local: threads of this process (default); dask: tasks of a Dask cluster (docs/scale.md)",
    )
    c.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the Dask scheduler, e.g. tcp://host:8786 (default: $DASK_SCHEDULER_ADDRESS; unset: a LocalCluster "
        "of -j worker processes); implies --executor dask",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = _force_before_config(list(sys.argv[1:] if argv is None else argv))
    verbose = "-v" in argv or "--verbose" in argv
    hooks = sys.excepthook, sys.unraisablehook
    if not verbose:
        # h5py reports an error in a destructor (closing an object of a file the full disk would not take)
        # twice: a traceback through sys.excepthook, then "Exception ignored" through sys.unraisablehook. It
        # cannot change what a command does, which has already failed and says why: that is for -v only.
        sys.excepthook = _quiet_h5py
        sys.unraisablehook = _quiet_h5py_unraisable
    try:
        return _main(argv, verbose)
    finally:
        sys.excepthook, sys.unraisablehook = hooks


def _main(argv: list[str], verbose: bool) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            _parser().print_help()
            return EXIT_USAGE
        return int(_COMMANDS[args.command](args))
    except SpecError as exc:
        _err(exc.render())
        if verbose:
            traceback.print_exc()
        return exc.exit_code
    except LayerscopeError as exc:
        _err(f"layerscope: {exc.render()}")
        if verbose:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        _err("layerscope: interrupted")
        return 130
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except MemoryError:
        _err("layerscope: out of memory (`layerscope validate CONFIG` estimates what a run needs)")
        return EXIT_STAGE
    except OSError as exc:
        from layerscope.runner.resources import disk_full, is_disk_full

        if not is_disk_full(exc):
            return _internal(exc, verbose)
        _err(f"layerscope: {disk_full(exc).render()}")
        return EXIT_STAGE
    except Exception as exc:
        return _internal(exc, verbose)


def _internal(exc: BaseException, verbose: bool) -> int:
    """What is left is a bug in layerscope: say so, with the traceback under -v."""
    _err(
        f"layerscope: internal error: {type(exc).__name__}: {exc}\n"
        "  this is a bug in layerscope; -v shows the traceback"
    )
    if verbose:
        traceback.print_exc()
    return EXIT_STAGE


def _from_h5py(tb: TracebackType | None) -> bool:
    frames = traceback.extract_tb(tb) if tb is not None else []
    return bool(frames) and frames[-1].filename.startswith("h5py/")


def _quiet_h5py(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if not _from_h5py(tb):
        sys.__excepthook__(kind, value, tb)


def _quiet_h5py_unraisable(unraisable: Any) -> None:
    if not _from_h5py(unraisable.exc_traceback):
        sys.__unraisablehook__(unraisable)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _reporter(console: Any, verbose: bool) -> Any:
    from layerscope.runner.progress import RichReporter

    return RichReporter(console, verbose=verbose)


def _console(quiet: bool = False, *, stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(quiet=quiet, highlight=False, stderr=stderr)
    if not console.is_terminal:
        console = Console(quiet=quiet, highlight=False, width=140, stderr=stderr)  # logs: wide tables beat wrapped
    return console


# -- commands ----------------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from layerscope import api

    exp, estimate = api.validate(args.config, overrides=args.overrides, cache_dir=args.cache_dir)
    print(exp.describe())
    print(f"  {estimate.describe()}")
    return EXIT_OK


def _force_before_config(argv: list[str]) -> list[str]:
    """`layerscope run --force CONFIG` means: force everything, with CONFIG as the config (not a stage name)."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--force" and out[i + 1].endswith((".yaml", ".yml")) and Path(out[i + 1]).is_file():
            out[i] = "--force=*"
    return out


def cmd_plan(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from layerscope import api

    plan = api.plan(
        args.config, overrides=args.overrides, cache_dir=args.cache_dir, force=args.force or (), only=args.only or ()
    )
    console = _console()
    table = Table(title=f"plan for {plan.experiment} (cache {plan.cache_dir})", title_justify="left")
    for col in ("stage", "status", "why", "key"):
        table.add_column(col)
    styles = {"cached": "green", "run": "yellow", "not-needed": "dim"}
    for s in plan.stages:
        st = styles[s.status]
        table.add_row(escape(s.id), f"[{st}]{s.status}[/{st}]", escape(s.reason), s.key[:12])
    console.print(table)
    n_run = len(plan.to_run)
    summary = f"{n_run} of {len(plan.stages)} stages would run" if n_run else "everything is cached: nothing to run"
    console.print(summary)
    return EXIT_OK


def _jobs(args: argparse.Namespace) -> int | None:
    return _positive(args.jobs, "-j/--jobs")


def cmd_run(args: argparse.Namespace) -> int:
    from layerscope import api

    jobs = _jobs(args)
    verbose = getattr(args, "verbose", False)
    # -q prints nothing but the verdict: no console and no reporter (importing rich was ~0.1 s of a warm rerun)
    console = None if args.quiet else _console()
    progress: Any = contextlib.nullcontext(False) if console is None else _reporter(console, verbose)
    try:
        with progress as reporter:
            result = api.execute(
                args.config,
                overrides=args.overrides,
                cache_dir=args.cache_dir,
                out=args.out,
                jobs=jobs,
                progress=reporter,
                force=args.force or (),
                only=args.only or (),
                no_cache=args.no_cache,
                executor=args.executor,
                scheduler=args.scheduler,
            )
    except RunError as exc:
        for o in exc.outcomes:
            if o.status == "failed":
                _err(f"layerscope: {o.sid} failed: {o.error}")
                if verbose and o.traceback:
                    print(o.traceback, file=sys.stderr)
        for o in exc.outcomes:
            if o.status == "skipped":
                _err(f"layerscope: {o.sid} {o.reason}")
        if args.only:
            done = [o.sid for o in exc.stages.values() if o.status in ("ran", "cached")]
            print(f"FAILED: {', '.join(done)} (--only: no report written)")
        return EXIT_STAGE
    verdict = result.verdict
    if verdict is None:  # --only, and the report was not among what it needed
        done = [o.sid for o in result.outcomes.values() if o.status in ("ran", "cached")]
        print(f"done: {', '.join(done)} (--only: no report written)")
        return EXIT_OK
    if not args.quiet:
        from layerscope.pipelines.reports.terminal import print_summary

        assert result.document is not None
        print_summary(result.document, console)
    formats = ", ".join(result.experiment.report_formats)
    print(f"{verdict.upper()}: {result.experiment.name} — report in {result.out_dir}/ ({formats})")
    return EXIT_OK if verdict == "pass" or args.exit_zero else EXIT_THRESHOLD


def cmd_report(args: argparse.Namespace) -> int:
    from layerscope import api
    from layerscope.pipelines.reports.terminal import TERMINAL_ROWS

    rows = _positive(args.rows, "--rows", 0)
    if args.format != "table" and (rows is not None or args.all):
        raise UsageError("--rows and --all shorten the terminal table: md, json and html always list every layer")
    if args.format in ("json", "html") and args.output is None and sys.stdout.isatty():
        # report.json of a real model is megabytes: printed by accident it floods the terminal for minutes.
        raise UsageError(
            f"--format {args.format} is not printed to a terminal",
            hint=f"write it with -o FILE, pipe it (`| jq`, `> report.{args.format}`), or pass -o - to print it anyway",
        )
    report = api.load_report(args.path).to_dict()
    if args.format == "table":
        if args.output:
            raise UsageError("-o/--output writes a file: use it with --format md, json or html")
        from layerscope.pipelines.reports.terminal import print_summary

        print_summary(report, _console(), rows=0 if args.all else TERMINAL_ROWS if rows is None else rows)
    else:
        from layerscope.pipelines.reports.outputs import render

        _write(render(report, args.format), args.output)
    return EXIT_OK


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from layerscope import api
    from layerscope.runner.progress import RichReporter

    console = _console(args.quiet)
    with RichReporter(console, verbose=getattr(args, "verbose", False)) as reporter:
        result = api.sweep(
            args.sweep,
            overrides=args.overrides,
            cache_dir=args.cache_dir,
            out=args.out,
            jobs=_jobs(args),
            progress=reporter,
            force=args.force or (),
            executor=args.executor,
            scheduler=args.scheduler,
        )
    for e in result.experiments:
        if e.error:
            _err(f"layerscope: {e.id}: {e.error}")
    if not args.quiet:
        from layerscope.sweep_summary import render_markdown

        console.print(render_markdown(result.summary), markup=False)
    t = result.summary["totals"]
    print(
        f"{result.verdict.upper()}: sweep {result.name} — {t['passed']} pass, {t['failed']} fail, "
        f"{t['errors']} error; summary in {result.out_dir}/"
    )
    return result.exit_code


def cmd_diff(args: argparse.Namespace) -> int:
    from layerscope import api
    from layerscope.runner.progress import RichReporter
    from layerscope.sweep_summary import read_summary

    _positive(args.limit, "--limit", 0)
    sweeps = [read_summary(x) is not None for x in (args.old, args.new)]
    if any(sweeps):
        if not all(sweeps):
            raise UsageError("diff compares two sweep summaries or two reports, not one of each")
        tol = _sweep_tolerance(args.tolerance)
        found = api.diff_sweeps(args.old, args.new, tolerance=tol)
        sys.stdout.write(found.render(args.format))
        return EXIT_THRESHOLD if args.fail_on_regression and found.regressed else EXIT_OK
    # Progress of config sides goes to stderr: stdout carries the diff (md/json are meant to be piped).
    with RichReporter(_console(args.quiet, stderr=True), verbose=getattr(args, "verbose", False)) as reporter:
        result = api.diff(
            args.old,
            args.new,
            tolerance=args.tolerance,
            overrides=args.set,
            overrides_a=args.set_a,
            overrides_b=args.set_b,
            cache_dir=args.cache_dir,
            progress=reporter,
        )
    sys.stdout.write(result.render(args.format, limit=args.limit))
    return EXIT_THRESHOLD if args.fail_on_regression and result.regressed else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from layerscope import api

    if args.format != "mlflow" and (args.tracking_uri or args.mlflow_experiment):
        raise UsageError("--tracking-uri and --mlflow-experiment apply to --format mlflow only")
    if args.output == "-":
        if args.format != "csv":
            raise UsageError("-o - prints the table: it applies to --format csv only")
        from layerscope.pipelines.reports.export import to_csv

        sys.stdout.write(to_csv(api.load_report(args.path)))
        return EXIT_OK
    result = api.export(
        args.path,
        args.format,
        out=args.output,
        tracking_uri=args.tracking_uri,
        mlflow_experiment=args.mlflow_experiment,
    )
    for path in result.files.values():
        print(f"wrote {path}")
    if result.mlflow_run_id:
        print(f"logged to MLflow run {result.mlflow_run_id}")
    return EXIT_OK


def _sweep_tolerance(items: Sequence[str]) -> float:
    """A sweep diff compares the worst deviation ratio: one relative tolerance (``0.05``), default 10%."""
    if not items:
        return 0.1
    try:
        value = float(items[-1].rpartition("=")[2])
    except ValueError:
        raise UsageError(f"--tolerance {items[-1]!r}: expected a relative tolerance like 0.05") from None
    if not value >= 0:
        raise UsageError(f"--tolerance must be at least 0, not {value}")
    return value


def _positive(value: int | None, flag: str, minimum: int = 1) -> int | None:
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}, not {value}")
    return value


def cmd_backends(args: argparse.Namespace) -> int:
    from rich.table import Table

    from layerscope.pipelines import backends

    table = Table(title="backends", title_justify="left")
    for col in ("backend", "available", "device / why not", "versions"):
        table.add_column(col, overflow="fold")
    for name, ok, detail, versions in backends.table():
        table.add_row(name, "[green]yes[/green]" if ok else "[red]no[/red]", detail, versions)
    _console().print(table)
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from layerscope.pipelines.models import zoo

    if args.action == "list":
        for m in zoo.ZOO.values():
            print(f"{m.name:14} {m.package + ' ' + m.version:28} {m.description}")
        return EXIT_OK
    if not args.name:
        raise UsageError("models fetch needs a NAME (see `layerscope models list`)")
    root = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    path = zoo.fetch(root, args.name, log=lambda m: print(m, file=sys.stderr))
    print(path)
    return EXIT_OK


def cmd_data(args: argparse.Namespace) -> int:
    from layerscope.pipelines.experiment import datasets

    if args.action == "list":
        for d in datasets.DATASETS.values():
            print(f"{d.name:16} {d.package + ' ' + d.version:22} {d.description}")
            for f in d.files:
                print(f"  {f.name:24} {f.license:14} {f.what}")
        return EXIT_OK
    if not args.name:
        raise UsageError("data fetch needs a NAME (see `layerscope data list`)")
    root = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    print(datasets.fetch(root, args.name, log=lambda m: print(m, file=sys.stderr)))
    return EXIT_OK


def cmd_fix(args: argparse.Namespace) -> int:
    from layerscope import api

    jobs = _jobs(args)
    _positive(args.candidates, "--candidates")
    _positive(args.max_tries, "--max-tries")
    console = _console(args.quiet, stderr=True)  # stdout carries only the snippet, so it can be redirected
    log = (lambda m: None) if args.quiet else (lambda m: console.print(f"[dim]{_escape(m)}[/dim]"))
    result = api.fix(
        args.config,
        args.run,
        overrides=args.overrides,
        cache_dir=args.cache_dir,
        out=args.out,
        targets=args.target,
        max_candidates=args.candidates,
        max_tries=args.max_tries,
        prove_minimal=args.prove_minimal,
        jobs=jobs,
        log=log,
    )
    if result.snippet is None:
        print(
            f"no set of the ranked layers passes every threshold — search report in {result.files['md']}",
            file=sys.stderr,
        )
        return EXIT_THRESHOLD
    print(result.snippet, end="")
    c = result.cost
    if not args.quiet:
        print(
            f"cost: {c.ran} stages ran ({c.inference_runs} inference passes), {c.cached} from the cache — "
            f"report in {result.files['md']}",
            file=sys.stderr,
        )
    return EXIT_OK


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


_COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "run": cmd_run,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "fix": cmd_fix,
    "diff": cmd_diff,
    "cache": cmd_cache,
    "export": cmd_export,
    "backends": cmd_backends,
    "models": cmd_models,
    "data": cmd_data,
}
