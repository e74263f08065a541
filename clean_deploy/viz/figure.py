"""Writing a finished matplotlib figure (shared by the report plots and the BEV drawings)."""
from __future__ import annotations

from pathlib import Path


def save_figure(fig, out: str | Path) -> Path:
    """Lay out ``fig``, write it to ``out`` (parent folders created) and close it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
