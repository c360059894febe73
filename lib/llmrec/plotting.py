"""One plotting style for every chapter, and atomic figure saving into ``figures/``."""

from __future__ import annotations

import io
import os
from pathlib import Path

from .data import atomic_write


def figures_dir() -> Path:
    """``$LLMREC_FIGURES`` or ``figures/`` at the repository root."""
    env = os.environ.get("LLMREC_FIGURES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "figures"


def setup_style() -> None:
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write ``figures/<name>.png`` atomically and return its path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    path = figures_dir() / f"{name}.png"
    atomic_write(path, buf.getvalue())
    return path
