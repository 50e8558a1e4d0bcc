"""Installed versions are importlib.metadata's, looked up once per process."""

from __future__ import annotations

import importlib.metadata

from layerscope.runner import versions


def test_the_version_is_importlib_metadatas_and_a_missing_distribution_is_none() -> None:
    versions.installed_version.cache_clear()
    assert versions.installed_version("numpy") == importlib.metadata.version("numpy")
    assert versions.installed_version("no-such-distribution-layerscope") is None


def test_each_name_is_looked_up_once(monkeypatch) -> None:
    calls: list[str] = []
    real = importlib.metadata.version

    def counting(name: str) -> str:
        calls.append(name)
        return real(name)

    versions.installed_version.cache_clear()
    monkeypatch.setattr(importlib.metadata, "version", counting)
    for _ in range(3):
        versions.installed_version("numpy")
    assert calls == ["numpy"]
    versions.installed_version.cache_clear()
