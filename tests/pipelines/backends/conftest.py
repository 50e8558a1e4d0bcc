"""Fixtures of the TensorRT backend tests: TensorRT "installed" with the stand-ins of standins.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from layerscope.pipelines import backends
from tests.pipelines.backends import standins


def forget(monkeypatch: pytest.MonkeyPatch, backend: Any) -> None:
    """Drop the backend's looked-up facts (installed version, availability, device) for this test."""
    for name in ("_unavailable", "installed_version", "environment"):
        monkeypatch.delitem(backend.__dict__, name, raising=False)


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """TensorRT 'installed' with a GPU, engines built and run by the stand-ins; returns a function to change
    the version."""
    backend = backends.get("tensorrt")
    forget(monkeypatch, backend)

    def install(version: str = standins.VERSION) -> None:
        for name, value in standins.installed_facts(version).items():
            monkeypatch.setitem(backend.__dict__, name, value)  # undone after the test

    install()
    standins.install(monkeypatch)
    return install
