"""Entry point of the ``layerscope`` command and of ``python -m layerscope``."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from layerscope.cli import main as cli_main

    code = cli_main(argv)
    from layerscope.runner import resources

    if resources.disk_filled_up():
        # A write that failed for lack of space leaves HDF5 with a file it cannot flush, and the library crashes
        # (SIGSEGV) when it shuts down at interpreter exit, turning exit 3 into 139. The command has said
        # everything and its temporaries are gone: leave without running the exit handlers.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
