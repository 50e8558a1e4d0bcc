"""Per-tensor comparison metrics: streaming, mergeable statistics (:mod:`.stats`, with the numba kernel in
:mod:`.kernel` and a numpy reference path) and a layer's verdict against its limits (:mod:`.limits`).

Nothing is re-exported here: :mod:`.stats` imports numpy, and the verdict is needed where numpy is not (a
cached rerun imports neither), so each module is imported by its own name.
"""
