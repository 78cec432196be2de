"""Memory of one training step per registered model: ``zoo info``'s estimate against a real step.

    uv run python benchmarks/memory.py [--batch-size 32] [--write-readme]

For every model in the registry, at its default input shape with Adam: the estimate of
``zoo.memory.estimate`` (meta device: no memory, no arithmetic) for ``32-true`` and ``bf16-mixed``,
and the measured peak of live tensor storage in a real float32 step on this machine's CPU
(``zoo.memory.measure_cpu_peak``), with the ratio. GPU figures (``torch.cuda.max_memory_allocated``)
are not measured here: no GPU was available. ``--write-readme`` puts the table into README.md
between the memory-table markers.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- memory-table:begin -->", "<!-- memory-table:end -->"


def main() -> None:
    import zoo
    from run_configs import machine, write_readme_block
    from zoo.memory import estimate_registered, human, measure_cpu_peak

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--write-readme", action="store_true")
    a = p.parse_args()
    bs = a.batch_size
    lines = [
        f"| model | input | parameters | estimate 32-true | measured CPU peak (float32) | estimate / measured | estimate bf16-mixed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in zoo.list_models():
        info = zoo.model_info(name)
        shape = tuple(info["input_shape"])
        est = estimate_registered(name, bs)
        half = estimate_registered(name, bs, precision="bf16-mixed")
        kwargs = {"num_classes": 10 if info.get("num_classes") is None else info["num_classes"], "input_shape": shape}  # 0: a generator
        measured = measure_cpu_peak(lambda: zoo.create_model(name, **kwargs), shape, bs)
        row = (f"| `{name}` | {'x'.join(map(str, shape))} | {est.num_params:,} | {human(est.total)} | {human(measured)} "
               f"| {est.total / measured:.2f} | {human(half.total)} |")
        print(row, flush=True)
        lines.append(row)
    lines.append("")
    lines.append(f"Batch {bs} per device, Adam. Measured on {machine()}, {datetime.date.today()}, by "
                 f"`uv run python benchmarks/memory.py --write-readme`. GPU (`torch.cuda.max_memory_allocated`): not measured.")
    table = "\n".join(lines)
    if a.write_readme:
        write_readme_block(BEGIN, END, table)


if __name__ == "__main__":
    main()
