"""Real TensorRT / CUDA Python bindings for the API conformance test: fetched from PyPI once, opened in a
subprocess, and asked which attribute chains exist.

The ``tensorrt-cu12-bindings`` wheels hold the real compiled bindings (``tensorrt_bindings/tensorrt.so``,
which ``import tensorrt`` re-exports) but need libnvinfer, libnvinfer_plugin and libnvonnxparser to load;
the ``tensorrt`` / ``tensorrt-cu12`` wheels on PyPI are download stubs. The bindings' import only
resolves a handful of C entry points (``createInferBuilder_INTERNAL``, ``getPluginRegistry``, ...)
and never calls them while registering its classes, so stand-in libraries of functions returning 0,
compiled here with the system C compiler, let the real module load and be introspected: its classes,
enum members, methods and properties are exactly what a user's ``import tensorrt`` gets. Nothing is
executed. ``cuda-bindings`` imports without a driver as it is.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

_PROBE = r"""
import ctypes, importlib, json, sys
req = json.load(sys.stdin)
for lib in req["preload"]:
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
sys.path[:0] = req["paths"]
try:
    mod = importlib.import_module(req["module"])
except ImportError as exc:
    print(json.dumps({"import_error": str(exc)}))
    raise SystemExit(0)
out = {}
for chain, store in req["uses"]:
    obj, owner, status = mod, None, "ok"
    for part in chain:
        owner = obj
        try:
            obj = getattr(obj, part)
        except AttributeError:
            status = "missing"
            break
    if status == "ok" and store:
        klass = owner if isinstance(owner, type) else type(owner)
        prop = next((k.__dict__[chain[-1]] for k in klass.__mro__ if chain[-1] in k.__dict__), None)
        if not isinstance(prop, property) or prop.fset is None:
            status = "not settable"
    out[".".join(chain)] = status
print(json.dumps({"version": getattr(mod, "__version__", ""), "uses": out}))
"""

KNOWN_SYMBOLS = [
    "createInferBuilder_INTERNAL",
    "createInferRefitter_INTERNAL",
    "createInferRuntime_INTERNAL",
    "createNvOnnxParserRefitter_INTERNAL",
    "createNvOnnxParser_INTERNAL",
    "getBuilderPluginRegistry",
    "getNvOnnxParserVersion",
    "getPluginRegistry",
    "initLibNvInferPlugins",
]


def fetch_wheel(downloads: Path, dist: str, version: str) -> Path:
    """The wheel's contents, extracted under ``downloads`` (downloaded with pip on first use; skip if offline)."""
    target = downloads / "wheels" / f"{dist}-{version}-py{sys.version_info[0]}{sys.version_info[1]}"
    if (target / ".complete").exists():
        return target
    folder = downloads / "wheels" / "_downloads"
    folder.mkdir(parents=True, exist_ok=True)
    stem = dist.replace("-", "_")
    found = [w for w in folder.glob(f"{stem}-{version}-*.whl") if _fits(w)]
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(folder)]
        try:
            done = subprocess.run([*cmd, f"{dist}=={version}"], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"network test: downloading {dist}=={version} from PyPI timed out")
        found = [w for w in folder.glob(f"{stem}-{version}-*.whl") if _fits(w)]
        if done.returncode != 0 or not found:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"network test: cannot download {dist}=={version} from PyPI (offline?): {last}")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(found[0]) as z:
        z.extractall(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    (target / ".complete").touch()
    return target


def _fits(wheel: Path) -> bool:
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return tag in wheel.name or "py3-none" in wheel.name


def _stubs(folder: Path, sonames: list[str], symbols: list[str]) -> list[str]:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("needs a C compiler to build stand-in TensorRT libraries for loading the real bindings")
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "stub.c"
    src.write_text("".join(f"long {s}(void) {{ return 0; }}\n" for s in symbols))
    out = []
    for soname in sonames:
        lib = folder / soname
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(lib), f"-Wl,-soname,{soname}", str(src)], check=True)
        out.append(str(lib))
    return out


def probe(
    module: str, paths: list[Path], uses: list[tuple[tuple[str, ...], bool]], *, stubs: Path | None, major: int = 0
) -> dict[str, str]:
    """{chain: 'ok' | 'missing' | 'not settable'} for the real module ``module`` found on ``paths``."""
    sonames = [f"lib{n}.so.{major}" for n in ("nvinfer", "nvinfer_plugin", "nvonnxparser")] if stubs else []
    symbols = list(KNOWN_SYMBOLS)
    for _ in range(8):  # a newer bindings build may need another library or entry point: add it and retry
        preload = _stubs(stubs, sonames, symbols) if stubs else []
        request = {"preload": preload, "paths": [str(p) for p in paths], "module": module, "uses": uses}
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], input=json.dumps(request), capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise AssertionError(f"probing {module} crashed: {done.stderr[-2000:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if "import_error" not in answer:
            return dict(answer["uses"])
        error = answer["import_error"]
        lib = re.search(r"(lib[\w.+-]+\.so[.\d]*): cannot open shared object file", error)
        sym = re.search(r"undefined symbol: (\w+)", error)
        if stubs is not None and lib and lib.group(1) not in sonames:
            sonames.append(lib.group(1))
        elif stubs is not None and sym and sym.group(1) not in symbols:
            symbols.append(sym.group(1))
        else:
            raise AssertionError(f"cannot import the real {module}: {error}")
    raise AssertionError(f"cannot import the real {module} with stand-in libraries")
