"""Every registered model through ``zoo export``'s ONNX path: largest |onnxruntime - eager PyTorch| at
batch sizes 1 and 7 on fresh input, and the export time.

    uv run python benchmarks/export_parity.py [--models lenet5 mlp] [--write-readme]

Each model is built as its task would be from a checkpoint (``zoo.export.registry_module``: the
task's forward with a fitted-looking input transform in front), exported with torch's dynamo ONNX
exporter (``zoo.export.export_onnx``) and checked with ``zoo.export.check_onnx`` (the bar: rtol 1e-3,
atol 1e-5). A model that fails prints the reason in the table. ``--write-readme`` puts the table into
README.md between the export-table markers.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- export-table:begin -->", "<!-- export-table:end -->"


def main() -> None:
    import zoo
    from run_configs import machine
    from zoo import export as zx

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="registered names (default: every model)")
    p.add_argument("--write-readme", action="store_true")
    a = p.parse_args()
    names = a.models or zoo.list_models()
    lines = [
        "| model | task | parameters | ONNX max abs diff, batch 1 | batch 7 | within rtol 1e-3 / atol 1e-5 | export s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            info = zoo.model_info(name)
            t0 = time.perf_counter()
            try:
                module, shape = zx.registry_module(name)
                path = zx.export_onnx(module, shape, Path(tmp) / f"{name}.onnx")
                seconds = time.perf_counter() - t0
                d = zx.check_onnx(path, module, shape)
                row = f"| `{name}` | {info['task']} | {info['num_params']:,} | {d[1]:.1e} | {d[7]:.1e} | yes | {seconds:.1f} |"
                path.unlink()
            except Exception as e:  # noqa: BLE001 - the table reports it
                why = " ".join(str(e).split())[:120].replace("|", "/")
                row = f"| `{name}` | {info['task']} | {info['num_params']:,} | - | - | no: {type(e).__name__}: {why} | - |"
            print(row, flush=True)
            lines.append(row)
    lines.append("")
    lines.append(
        f"Fresh random raw input (not the traced example), onnxruntime {__import__('onnxruntime').__version__} CPU. "
        f"Measured on {machine()}, {datetime.date.today()}, by `uv run python benchmarks/export_parity.py"
        f"{' --models ' + ' '.join(a.models) if a.models else ''} --write-readme`; export seconds include "
        "torch.export tracing and the ONNX translation."
    )
    table = "\n".join(lines)
    if a.write_readme:
        from run_configs import write_readme_block

        write_readme_block(BEGIN, END, table)


if __name__ == "__main__":
    main()
