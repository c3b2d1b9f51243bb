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
