"""Installed distributions' versions, looked up once per process.

``importlib.metadata.version`` searches every folder of ``sys.path`` and parses the distribution's METADATA on
each call; a plan's keys asked it 18 times for 7 names on every run. The answer is remembered for the life of
the process, which is also the life of the modules it imported: a package upgraded while a process runs is
still the old code in that process, so the old version is the true one for what it computes.
"""

from __future__ import annotations

from functools import cache


@cache
def installed_version(name: str) -> str | None:
    """The version of the installed distribution ``name`` (as ``importlib.metadata.version``), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
