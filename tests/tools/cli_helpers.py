"""Running ``tmq`` in-process for the tools' unit tests."""

from __future__ import annotations

import contextlib
import io

from tmq.tools.cli import main


def run_main(*argv: str) -> tuple[int, str]:
    """``tmq argv...`` in this process: its exit status (argparse's exits included) and
    what it wrote to stderr; stdout is discarded."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(list(argv))
        except SystemExit as exit_:
            status = exit_.code
    return status, err.getvalue()
