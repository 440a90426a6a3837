"""The ``hwnas`` command line.  Results go to stdout (``--json`` for machine-readable), logs and
progress to stderr.  User errors print ``error: <one line>`` and exit with status 2.

One module per command group; importing them (in this order, which is the order of ``--help``)
registers their commands on ``app``."""

from __future__ import annotations

import sys
import warnings

from ..errors import HwnasError
from .common import app, err, load_target, out, parse_arch, space_app  # noqa: F401  (the CLI's public names)
from . import measure_cmds, space_cmds, predict_cmds, report_cmds, search_cmds, supernet_cmds, hypernet_cmds  # noqa: F401  (registers their commands)

from ..fleet.cli import fleet_app  # noqa: E402  (Ray is imported only when a fleet command runs)
app.add_typer(fleet_app, name="fleet")


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def main() -> None:
    warnings.showwarning = _showwarning
    from ..allocator import allow_tuning

    allow_tuning()  # this process may keep the memory ORT frees (README: HWNAS_MALLOC_TUNING)
    try:
        app()
    except HwnasError as e:
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
