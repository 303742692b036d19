"""Faithfulness curves on one plot (matplotlib, the `plot` extra): f against the fraction of edges kept."""
from __future__ import annotations

import os

from .errors import Unsupported, UserError

INSTALL = 'pip install matplotlib; from a source checkout, pip install --no-build-isolation ".[plot]"'


def check_plot_path(path: str) -> None:
    """Refuse a plot file name matplotlib will not write here (said before the curves are computed)."""
    if os.path.splitext(path)[1].lower() not in (".png", ".svg"):
        raise UserError(f"cannot plot to {path!r}: use a .png or .svg file name")


def plot_curves(curves, path: str, title: str = "") -> list[str]:
    """Draw every curve (edgeprune.curves.Curve) on one log-x plot; writes path and its .png/.svg twin.

    A curve of signed scores also gets its |score| ranking's curve, dashed (CMD is measured on it).

    Returns the files written.
    """
    check_plot_path(path)
    base = os.path.splitext(path)[0]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Unsupported(f"plotting needs matplotlib: {INSTALL}") from None
    fig, ax = plt.subplots(figsize=(10.5, 4.6))
    for curve in curves:
        x = [100 * f for f in curve.fractions]
        (line,) = ax.plot(x, curve.faithfulness, marker="o", markersize=3,
                          label=f"{curve.label or 'circuit'} (CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f})")
        if curve.faithfulness_abs != curve.faithfulness:  # signed scores: CMD's ranking is by |score|
            ax.plot(x, curve.faithfulness_abs, color=line.get_color(), linestyle="--", linewidth=1,
                    label=f"{curve.label or 'circuit'}, ranked by |score| (CMD's curve)")
    ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("edges kept (% of MIB's edge count)")
    ax.set_ylabel(f"faithfulness ({curves[0].metric if curves else ''})")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: curves stay visible
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        fig.savefig(base + suffix, dpi=150)
        written.append(base + suffix)
    plt.close(fig)
    return written
