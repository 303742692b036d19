"""Faithfulness curves on one plot (matplotlib, the `plot` extra): f against the fraction of edges kept."""
from __future__ import annotations

import os

from .errors import Unsupported, UserError


def plot_curves(curves, path: str, title: str = "") -> list[str]:
    """Draw every curve (edgeprune.curves.Curve) on one log-x plot; writes path and its .png/.svg twin.

    Returns the files written.
    """
    base, ext = os.path.splitext(path)
    if ext.lower() not in (".png", ".svg"):
        raise UserError(f"cannot plot to {path!r}: use a .png or .svg file name")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Unsupported("plotting needs matplotlib: pip install 'edgeprune[plot]' (or matplotlib)") from None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for curve in curves:
        ax.plot([100 * x for x in curve.fractions], curve.faithfulness, marker="o", markersize=3,
                label=f"{curve.label or 'circuit'} (CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f})")
    ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("edges kept (% of MIB's edge count)")
    ax.set_ylabel(f"faithfulness ({curves[0].metric if curves else ''})")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        fig.savefig(base + suffix, dpi=150)
        written.append(base + suffix)
    plt.close(fig)
    return written
