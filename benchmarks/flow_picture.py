"""What one gradient-flow picture costs: Pillow (what ``GradientInspector`` draws every epoch)
against the same bar chart drawn with matplotlib's Agg renderer (what it used to draw).

    uv run python benchmarks/flow_picture.py [--repeats 30]

The layers are LeNet-5's as the inspector names them inside ``ClassificationTask``. Every timing
is the median over ``--repeats`` calls after one warm-up call (fonts, caches); the PNGs go to a
temporary folder. These are the figures quoted in ``callbacks/flow_picture.py`` and
``docs/callbacks.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from callbacks.flow_picture import render_gradient_flow, save_png  # noqa: E402

NAMES = ["net.features.0", "net.features.3", "net.head.0", "net.head.2", "net.head.4"]
MEANS = [2e-4, 8e-4, 3e-3, 6e-3, 2e-2]
MAXES = [3e-3, 1e-2, 4e-2, 5e-2, 2e-1]
TITLE = "Gradient flow, epoch 7 (layers in forward order)"


def matplotlib_picture(path: Path) -> None:
    """The previous implementation: matplotlib's object API, log10 bars on a linear axis."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 0.45 * len(NAMES) + 2), 4), dpi=72)
    ax = fig.add_subplot()
    fig.subplots_adjust(bottom=0.35, left=0.15)
    pos = list(range(len(NAMES)))
    floor = -12.0
    ax.bar(pos, [math.log10(v) - floor for v in MAXES], bottom=floor, color="tab:cyan", label="max |grad|")
    ax.bar(pos, [math.log10(v) - floor for v in MEANS], bottom=floor, color="tab:blue", label="mean |grad|")
    ax.set_xticks(pos, NAMES, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("log10 |gradient|")
    ax.set_title(TITLE, fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(path)


_epoch = iter(range(10**9))


def epoch_picture(out: Path) -> None:
    # the title carries the epoch number, so its text is drawn anew each time, as in training
    save_png(render_gradient_flow(NAMES, MEANS, MAXES, f"Gradient flow, epoch {next(_epoch)} (layers in forward order)"),
             out / "e.png")


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: font loading, text caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    from run_configs import machine

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        img = render_gradient_flow(NAMES, MEANS, MAXES, TITLE)
        rows = [
            ("Pillow: draw", median_ms(lambda: render_gradient_flow(NAMES, MEANS, MAXES, TITLE), args.repeats)),
            ("Pillow: write palette PNG (save_png)", median_ms(lambda: save_png(img, out / "p.png"), args.repeats)),
            ("Pillow: write RGB PNG, for comparison", median_ms(lambda: img.save(out / "rgb.png", compress_level=1), args.repeats)),
            ("Pillow: draw + save_png with a new title (what an epoch pays)", median_ms(lambda: epoch_picture(out), args.repeats)),
            ("matplotlib Agg: draw + savefig (before)", median_ms(lambda: matplotlib_picture(out / "m.png"), args.repeats)),
        ]
    print(f"One gradient-flow picture of LeNet-5's {len(NAMES)} layers, median of {args.repeats} calls")
    print(f"machine: {machine()}\n")
    print("| step | ms |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
