"""Plot defaults: a colour-blind-safe palette (Okabe & Ito 2008), readable sizes."""
from __future__ import annotations

# Okabe-Ito palette, safe for the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
SEQUENTIAL_CMAP = "viridis"  # perceptually uniform and colour-blind safe


def use_course_style() -> None:
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update({
        "axes.prop_cycle": cycler(color=OKABE_ITO),
        "image.cmap": SEQUENTIAL_CMAP,
        "figure.figsize": (7.0, 4.0),
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.frameon": False,
    })


def save_if_asked(fig, name: str) -> None:
    """Save a figure as PNG into $LLMCOURSE_FIGURES (used by CI to keep plots as artifacts)."""
    import os

    from ..settings import setting
    folder = setting("LLMCOURSE_FIGURES")
    if folder:
        os.makedirs(folder, exist_ok=True)
        fig.savefig(os.path.join(folder, f"{name}.png"), bbox_inches="tight")
