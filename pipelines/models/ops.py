"""Which operators of a model a backend cannot run, known before anything is built.

A model with an operator ONNX Runtime does not know used to pass ``validate`` and fail at build (exit 3).
An operator is known when ONNX defines it (ONNX Runtime implements the standard set; some operators have no
kernel and are handled when a session is made: ``Constant`` is folded, functions are expanded) or when ONNX
Runtime lists a CPU kernel for it (its contrib operators, ``com.microsoft``). Only the domains ONNX Runtime
implements are judged: an operator of another domain may be a function defined inside the model, which the
summary does not list, and its build says so if it is not. Asking ONNX Runtime means importing it (half a
second), so the answer is memoised in the cache by model digest, backend and library versions: a cached rerun
does not pay for it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from layerscope.pipelines.models.summary import ModelSummary
from layerscope.runner.codeversion import code_version
from layerscope.runner.files import atomic_write
from layerscope.runner.hashing import digest

_JUDGED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


@lru_cache(maxsize=1)
def _ort_cpu_kernels() -> frozenset[tuple[str, str]]:
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_c

    return frozenset(
        (k.op_name, "" if k.domain == "ai.onnx" else k.domain)
        for k in ort_c.get_all_opkernel_def()
        if k.provider == "CPUExecutionProvider"
    )


def _onnx_defines(op: str, domain: str) -> bool:
    import onnx.defs

    return bool(onnx.defs.has(op, domain))


def unknown_ops(
    summary: ModelSummary, backend: str, *, memo_dir: Path | None = None, model_digest: str = ""
) -> dict[str, list[str]]:
    """``domain::op`` (or ``op``) -> the nodes using it, for every operator ``backend`` cannot run; memoised
    in ``memo_dir`` under ``model_digest`` when both are given."""
    if memo_dir is None or not model_digest:
        return _unknown_ops(summary, backend)
    from layerscope.runner.versions import installed_version

    versions = {name: installed_version(name) for name in ("onnx", "onnxruntime")}
    if None in versions.values():
        return _unknown_ops(summary, backend)
    key = digest({"model": model_digest, "backend": backend, "versions": versions, "code": code_version(__name__)})
    memo = memo_dir / f"{key}.json"
    try:
        return {str(k): list(v) for k, v in json.loads(memo.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        pass
    found = _unknown_ops(summary, backend)
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, json.dumps(found))
    except OSError:
        pass  # a memo: a read-only cache asks again next time
    return found


def _unknown_ops(summary: ModelSummary, backend: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for node in summary.nodes:
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain not in _JUDGED_DOMAINS:
            continue
        if _onnx_defines(node.op_type, domain):
            continue
        if backend == "onnxruntime":
            known = (node.op_type, domain) in _ort_cpu_kernels()
        else:  # TensorRT's parser is not importable here: the operator must at least exist in ONNX
            known = False
        if not known:
            out.setdefault(f"{domain}::{node.op_type}" if domain else node.op_type, []).append(node.name)
    return out
