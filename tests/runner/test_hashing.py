"""Canonical digests and the file-digest memo (an unchanged file is never reread)."""

from __future__ import annotations

import os
from pathlib import Path

from layerscope.runner.hashing import FileDigests, canonical_json, digest, hash_file


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, 2.5, None]}) == canonical_json({"a": [1, 2.5, None], "b": 1})
    assert digest({"x": (1, 2)}) == digest({"x": [1, 2]})
    assert digest({"x": 1}) != digest({"x": 1.5})
    assert canonical_json(float("inf")) == '"inf"'


def test_memo_skips_unchanged_files_across_instances(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"x" * 1000)
    memo = tmp_path / "memo"
    first = FileDigests(memo)
    d1 = first(f)
    assert d1 == hash_file(f) and first.hashed == [f]
    second = FileDigests(memo)  # a later process: served from the on-disk memo
    assert second(f) == d1 and second.hashed == []
    assert second(f) == d1 and second.hashed == []


def test_memo_rehashes_when_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    digests = FileDigests(tmp_path / "memo")
    d1 = digests(f)
    st = f.stat()
    f.write_bytes(b"b" * 100)  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime (ctime still moves)
    d2 = digests(f)
    assert d1 != d2 and len(digests.hashed) == 2
