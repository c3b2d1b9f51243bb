"""Figures of the results: structure and validation metric per epoch."""

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from benchmarks.methods import DUAL_AVERAGING, LABELS


def plot_task(name: str, result: dict[str, Any], path: Path) -> None:
  """Structure (of W, and dashed of θ̂ for RAMDA/RMDA) and the validation
  metric per epoch, mean over seeds."""
  fig = Figure(figsize=(8, 3), dpi=80)
  axes = fig.subplots(1, 2)
  mean = lambda runs, key: np.mean([run["epochs"][key] for run in runs.values()],
                                   axis=0)
  for method, runs in result["runs"].items():
    metric = mean(runs, "val_" + result["metric"])
    epochs = np.arange(1, len(metric) + 1)
    line, = axes[0].plot(epochs, mean(runs, "structure_W"), label=LABELS[method])
    if method in DUAL_AVERAGING:
      axes[0].plot(epochs, mean(runs, "structure_theta"), "--",
                   color=line.get_color(),
                   label=LABELS[method] + r" $\hat\theta$")
    axes[1].plot(epochs, metric, color=line.get_color(), label=LABELS[method])
  axes[0].set_ylabel(result["structure"].replace("_", " ") + " (%)")
  axes[1].set_ylabel("validation " + result["metric"]
                     + (" (%)" if result["metric"] == "accuracy" else ""))
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.suptitle(f"{name} (mean over seeds {result['seeds']})", fontsize=9)
  fig.tight_layout()
  fig.savefig(path)


def plot_frontier(name: str, curves: dict[str, list[dict[str, float]]],
                  best: float, within: tuple[float, ...], path: Path) -> None:
  """Validation accuracy against structure, one curve per method through
  its λ sweep (error bars: std over seeds), with the matched-accuracy
  floors below the best unregularized run ``best`` dotted."""
  fig = Figure(figsize=(5, 3.5), dpi=80)
  ax = fig.subplots()
  for method, points in curves.items():
    ax.errorbar([p["structure"] for p in points],
                [p["metric"] for p in points],
                xerr=[p["structure_std"] for p in points],
                yerr=[p["metric_std"] for p in points],
                marker="o", markersize=3, capsize=2, label=LABELS[method])
  for w in within:
    ax.axhline(best - w, color="gray", linestyle=":", linewidth=1)
  ax.set_xlabel("structure of W (%)")
  ax.set_ylabel("validation accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  ax.set_title(f"{name}: λ sweep (dotted: best unregularized − "
               f"{', '.join(f'{w:g}' for w in within)})", fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
