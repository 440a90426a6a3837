"""Writing a benchmark's results JSON: indented, atomically (a stopped run leaves the previous
complete file, never half of one).  Imported by the benchmark scripts that save as they go."""

from __future__ import annotations

import json
from pathlib import Path


def save_results(res: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(out)
