"""Learning curves drawn from history.csv into curves.png."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display is needed, and none exists on servers or in containers

import matplotlib.pyplot as plt  # noqa: E402  # pylint: disable=wrong-import-position
import pandas as pd  # noqa: E402  # pylint: disable=wrong-import-position


def plot_history(history_csv: Path, out_png: Path) -> None:
    """Draw losses (left) and validation metrics (right) per epoch, and save them as a PNG."""
    history = pd.read_csv(history_csv)
    metrics = [c for c in history.columns if c.startswith("val_") and c != "val_loss"]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for column in ("train_loss", "val_loss"):
        ax_loss.plot(history["epoch"], history[column], marker="o", label=column)
    for column in metrics:
        ax_metric.plot(history["epoch"], history[column], marker="o", label=column)
    for axis, title in ((ax_loss, "loss"), (ax_metric, "validation metrics")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    # Fixed margins rather than tight_layout(), which measures every label and doubles the drawing time.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.92, wspace=0.18)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
