"""Writing matplotlib figures, shared by the report (:mod:`hwnas.report`) and the search's
outputs (:mod:`hwnas.search.output`), which each draw their own."""

from __future__ import annotations

from pathlib import Path

FIG_DPI = 110


def save_figure(fig, path: Path, dpi: int = FIG_DPI) -> Path:
    """Lay out, write and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
