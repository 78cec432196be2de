"""``zoo export``: a checkpoint out of the training loop, as ONNX, a ``torch.export`` program or safetensors.

    zoo export --ckpt_path CKPT --format onnx|exported_program|safetensors [--output FILE] [--overwrite]

What is exported is the task's ``forward`` on RAW input, as ``load_from_checkpoint`` gives it: the fitted
input transform (resize, training-row mean/std) and, for regression, the target transform are part of
the graph, so the file takes samples as the DataModule yields them. The graph's input is named
``input`` and its batch dimension is dynamic; its output is the task's output (the logits of a
classifier, raw-unit predictions of a regressor, whatever a newer task's ``forward`` returns).

* ``onnx``: torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, which needs onnxscript),
  then checked in onnxruntime on fresh random input (not the traced example) at batch sizes 1 and 7
  against eager PyTorch, rtol 1e-3 / atol 1e-5; the largest difference is printed.
* ``exported_program``: ``torch.export.save`` (``.pt2``), checked the same way.
* ``safetensors``: the task's state dict (``safetensors.torch.save_model``) plus, in the file's JSON
  header, the task class and its hyper-parameters, so ``load_safetensors`` rebuilds the model with no
  pickle at all; checked bit-identical after reading it back.

TorchScript is not offered: every registered model exports through ``torch.export``/ONNX (the tests
loop over the registry). A model that cannot is listed in ``EXPORT_LIMITS`` with the reason, which
``zoo export`` prints as its one-line error.

The functions here are generic over "a module taking one raw tensor": ``export_onnx(module,
input_shape, path)`` is what the command, the tests and ``benchmarks/export_parity.py`` all call.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

FORMATS = {"onnx": ".onnx", "exported_program": ".pt2", "safetensors": ".safetensors"}
RTOL, ATOL = 1e-3, 1e-5  # the issue's parity bar for onnxruntime vs eager PyTorch
CHECK_BATCHES = (1, 7)  # the traced example has batch 2, so both are sizes the tracer never saw
SAFETENSORS_KEY = "zoo"  # metadata key of the JSON header in a zoo safetensors file
SAFETENSORS_VERSION = 1

# Registered model name -> why it cannot go through torch.export/ONNX (none today). The registry
# tests mark such a model as an expected failure with this reason; `zoo export` refuses it with it.
EXPORT_LIMITS: dict[str, str] = {}

# Registry task (``register_model(task=...)``) -> the task class that trains it, for building a model
# from the registry alone (tests, benchmarks). A registry task not listed here is exported as its
# plain network behind an input transform (``registry_module``), which is what a task's forward is.
TASK_CLASSES = {
    "classification": "zoo.tasks.ClassificationTask",
    "binary_classification": "zoo.tasks.BinaryClassificationTask",
    "regression": "zoo.tasks.RegressionTask",
}


def _error(msg: str) -> Exception:
    from zoo.cli_errors import ZooConfigError

    return ZooConfigError(msg)


# ------------------------------------------------------------------------------- checkpoints


def _import_task_class(class_path: str, where: str):
    """A ``ZooTask`` subclass from its dotted path. Only paths inside the ``zoo`` package are imported:
    the path comes from a file, and importing an arbitrary module runs its top-level code."""
    from zoo.tasks import ZooTask

    module_name, _, name = str(class_path).rpartition(".")
    if not module_name.startswith("zoo.") or not name:
        raise _error(f"{where} names the class {class_path!r}, which is not a zoo task, give a file written by zoo fit / zoo export")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise _error(f"{where} names the task {class_path!r}, which this version of the zoo does not have, update lightning-zoo") from None
    if not (isinstance(cls, type) and issubclass(cls, ZooTask)):
        raise _error(f"{where} names {class_path!r}, which is not a ZooTask, give a file written by zoo fit / zoo export")
    return cls


def read_checkpoint(ckpt_path: Any) -> tuple[Any, dict[str, Any], str]:
    """``(task class, hyper-parameters, sha256)`` of a zoo checkpoint, read with ``weights_only=True``;
    a one-line error for a file that is missing, unreadable or not a zoo checkpoint."""
    import torch

    from zoo.tasks import checkpointing

    path = checkpointing.safe_load_path(str(ckpt_path)) if checkpointing.is_url(ckpt_path) else Path(ckpt_path)
    path = Path(path)
    if not path.is_file():
        raise _error(f"--ckpt_path: {ckpt_path} does not exist, give the path of a .ckpt file written by zoo fit")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means the same to the user
        what = " ".join(str(e).split()).split(". ")[0][:200]
        raise _error(f"--ckpt_path: {path} cannot be read as a checkpoint ({what}), give a .ckpt file written by zoo fit") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "model" not in hp or "state_dict" not in ckpt:
        raise _error(
            f"--ckpt_path: {path} is not a zoo checkpoint (no task hyper-parameters in it), give a .ckpt file written by zoo fit"
        )
    class_path = hp.get("_class_path")
    if class_path is None:  # a task built in Python (not by the CLI): its registry entry names the task
        import zoo

        try:
            task = zoo.model_info(hp["model"])["task"]
        except KeyError:
            raise _error(f"--ckpt_path: {path} holds model {hp['model']!r}, which is not registered, update lightning-zoo") from None
        class_path = TASK_CLASSES.get(task)
        if class_path is None:
            raise _error(f"--ckpt_path: {path} does not say which task trained it, re-save it with zoo fit")
    cls = _import_task_class(class_path, f"--ckpt_path: {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return cls, hp, digest


def load_task(ckpt_path: Any):
    """The task of a zoo checkpoint, on CPU in eval mode (``load_from_checkpoint``, weights only)."""
    cls, _, digest = read_checkpoint(ckpt_path)
    task = cls.load_from_checkpoint(str(ckpt_path), map_location="cpu")
    task.eval()
    task.ckpt_sha256 = digest
    return task


def raw_input_shape(task) -> tuple[int, ...]:
    """Shape of one raw sample the task takes (as its DataModule yields it)."""
    pre = getattr(task, "preprocess", None)
    if pre is not None and hasattr(pre, "raw_shape"):
        return tuple(pre.raw_shape)
    return tuple(int(s) for s in task.hparams.input_shape)


# ------------------------------------------------------------------------------ the graph


def _flat_outputs(out: Any) -> list[Any]:
    """A module's output(s) as a flat list of tensors (a tensor, a tuple/list, a dict of tensors)."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flat_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _flat_outputs(v)]
    return [out]


def _export_module(task):
    """The module that is exported: ``task.export_forward`` when a task defines one (a task whose
    ``forward`` is not its inference output), else ``task.forward``. Its argument is named ``input``,
    the ONNX input name; its output is flattened to a tuple of tensors (ONNX has no dicts)."""
    import torch.nn as nn

    class RawInputModel(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input):  # noqa: A002 - the ONNX input's name
            fn = getattr(self.inner, "export_forward", None) or self.inner
            out = _flat_outputs(fn(input))
            return out[0] if len(out) == 1 else tuple(out)

    return RawInputModel(task).eval()


def output_names(module, input_shape: Sequence[int]) -> list[str]:
    import torch

    with torch.no_grad():
        n = len(_flat_outputs(module(torch.zeros(2, *input_shape))))
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def example(input_shape: Sequence[int], batch: int, seed: int):
    """Random raw input of ``batch`` samples; values spread like raw pixels or features (0..16 scale
    covers the digits' range and standardises to a few units)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *input_shape, generator=g) * 16.0


@contextlib.contextmanager
def _quiet_export():
    """The dynamo exporter prints its progress ("[torch.onnx] Obtain model graph ... ✅") to stdout and
    warns about internals the user did not write; the command prints its own one-line summary."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def trace(module, input_shape: Sequence[int]):
    """``torch.export`` of ``module`` with a dynamic batch dimension (traced at batch 2: torch.export
    specialises sizes 0 and 1, so a batch-1 example would fix the batch size)."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    with _quiet_export():
        return torch.export.export(module, (example(input_shape, 2, seed=0),), dynamic_shapes={"input": {0: batch}})


def export_onnx(module, input_shape: Sequence[int], path: Any) -> Path:
    """Write ``module`` (raw tensor in, tensor(s) out) as ONNX with input ``input`` and a dynamic batch."""
    import torch

    path = Path(path)
    names = output_names(module, input_shape)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_export():
        program = torch.onnx.export(
            module,
            (example(input_shape, 2, seed=0),),
            input_names=["input"],
            output_names=names,
            dynamic_shapes={"input": {0: batch}},
            dynamo=True,
            external_data=False,  # one self-contained file (protobuf's 2 GB cap is far above the zoo's models)
        )
        program.save(str(path))
    return path


def _compare(expected: list[Any], got: list[Any]) -> float:
    import torch

    if len(expected) != len(got):
        raise AssertionError(f"{len(got)} outputs, eager PyTorch gives {len(expected)}")
    worst = 0.0
    for e, g in zip(expected, got):
        g = torch.as_tensor(g)
        torch.testing.assert_close(g, e.detach(), rtol=RTOL, atol=ATOL, check_dtype=False)
        if e.numel():
            worst = max(worst, float((g.double() - e.double()).abs().max()))
    return worst


def check_onnx(path: Any, module, input_shape: Sequence[int], batches: Sequence[int] = CHECK_BATCHES, seed: int = 1) -> dict[int, float]:
    """Run the ONNX file in onnxruntime on fresh input (``seed`` differs from the traced example's) and
    compare with eager PyTorch; ``{batch: largest absolute difference}``; raises past rtol/atol."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = {}
    for i, b in enumerate(batches):
        x = example(input_shape, b, seed=seed + i)
        with torch.no_grad():
            expected = _flat_outputs(module(x))
        got = sess.run(None, {"input": x.numpy()})
        out[b] = _compare(expected, [torch.from_numpy(g) for g in got])
    return out


def check_program(program, module, input_shape: Sequence[int], batches: Sequence[int] = CHECK_BATCHES, seed: int = 1) -> dict[int, float]:
    """The same check for a ``torch.export`` program (``ExportedProgram``)."""
    import torch

    run = program.module()
    out = {}
    for i, b in enumerate(batches):
        x = example(input_shape, b, seed=seed + i)
        with torch.no_grad():
            out[b] = _compare(_flat_outputs(module(x)), _flat_outputs(run(x)))
    return out


# ----------------------------------------------------------------------------- safetensors


def save_safetensors(task, path: Any) -> Path:
    """The task's weights plus a JSON header (task class, hyper-parameters) that rebuilds it without pickle."""
    from safetensors.torch import save_model

    from zoo.tasks.base import _plain

    hp = {k: _plain(v) for k, v in task.hparams.items()}
    class_path = hp.pop("_class_path", None) or f"{type(task).__module__}.{type(task).__qualname__}"
    header = {"format_version": SAFETENSORS_VERSION, "class_path": class_path, "hyper_parameters": hp}
    try:
        text = json.dumps(header)
    except TypeError as e:
        raise _error(f"the checkpoint's hyper-parameters are not plain values ({e}), re-train with plain model.init_args") from None
    path = Path(path)
    save_model(task, str(path), metadata={SAFETENSORS_KEY: text})  # save_model handles tied (shared) weights
    return path


def read_safetensors_header(path: Any) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if SAFETENSORS_KEY not in meta:
        raise _error(f"{path} has no zoo header (metadata key {SAFETENSORS_KEY!r}), give a file written by zoo export --format safetensors")
    header = json.loads(meta[SAFETENSORS_KEY])
    if header.get("format_version") != SAFETENSORS_VERSION:
        raise _error(f"{path} has zoo header version {header.get('format_version')}, this zoo reads {SAFETENSORS_VERSION}, update lightning-zoo")
    return header


def load_safetensors(path: Any):
    """Rebuild the task from a zoo safetensors file: class and hyper-parameters from the JSON header,
    weights from the tensors (strict: every key must match). No pickle is involved."""
    from safetensors.torch import load_model

    header = read_safetensors_header(path)
    cls = _import_task_class(header["class_path"], str(path))
    task = cls(**header["hyper_parameters"])
    missing, unexpected = load_model(task, str(path), strict=True)
    task.eval()
    return task


def check_safetensors(path: Any, task, input_shape: Sequence[int]) -> None:
    """Bit-identical round trip: every tensor of the state dict and the outputs on fresh input."""
    import torch

    back = load_safetensors(path)
    a, b = task.state_dict(), back.state_dict()
    if a.keys() != b.keys():
        raise AssertionError(f"state dict keys differ after the round trip: {sorted(set(a) ^ set(b))[:5]}")
    for k in a:
        if not torch.equal(a[k], b[k]):
            raise AssertionError(f"{k} differs after the safetensors round trip")
    x = example(input_shape, 3, seed=5)
    with torch.no_grad():
        for e, g in zip(_flat_outputs(task(x)), _flat_outputs(back(x))):
            if not torch.equal(e, g):
                raise AssertionError("outputs differ after the safetensors round trip")


# ---------------------------------------------------------------------------------- registry


def registry_module(name: str, seed: int = 0):
    """``(module, raw input shape)`` for a registered model, built as its task would be from a checkpoint:
    the task of its registry ``task`` with a fitted-looking input transform (mean 0.5, std 2 per entry
    of the statistics axis); a registry task without a task class here gets the plain network behind
    the same transform. For the tests and the benchmark: every registered model, no training."""
    import torch

    import zoo
    from zoo.layers import InputTransform

    info = zoo.model_info(name)
    shape = list(info["input_shape"])
    spec = {"input_shape": shape, "resize": None, "axis": 0, "mean": [0.5] * shape[0], "std": [2.0] * shape[0]}
    torch.manual_seed(seed)
    class_path = TASK_CLASSES.get(info["task"])
    if class_path is not None:
        cls = _import_task_class(class_path, "TASK_CLASSES")
        num_classes = 2 if info["task"] == "binary_classification" else info["num_classes"]  # one logit for two classes
        module = cls(model=name, num_classes=num_classes, input_shape=shape, preprocessing=spec)
    else:
        module = torch.nn.Sequential(InputTransform(spec), zoo.create_model(name, input_shape=tuple(shape)))
    return _export_module(module.eval()), tuple(shape)


# -------------------------------------------------------------------------------------- command


def _default_output(ckpt_path: Any, fmt: str) -> Path:
    """Beside a local checkpoint; in the current folder for a URL (named after the URL's file)."""
    from urllib.parse import urlparse

    from zoo.tasks import checkpointing

    if checkpointing.is_url(ckpt_path):
        return Path(Path(urlparse(str(ckpt_path)).path).name or "model").with_suffix(FORMATS[fmt])
    return Path(str(ckpt_path)).with_suffix(FORMATS[fmt])


def run_export(ckpt_path: Any, fmt: str, output: Any = None, overwrite: bool = False) -> dict[str, Any]:
    """Export ``ckpt_path`` to ``fmt`` and check the file; returns what was written and measured."""
    if fmt not in FORMATS:
        raise _error(f"--format: {fmt!r} is not a format zoo export writes, use one of {', '.join(FORMATS)}")
    out = Path(output) if output else _default_output(ckpt_path, fmt)
    if out.exists() and not overwrite:
        raise _error(f"--output: {out} exists, choose another --output or add --overwrite")
    if out.parent and not out.parent.is_dir():
        raise _error(f"--output: the folder {out.parent} does not exist, create it or choose another --output")
    _, hp, _ = read_checkpoint(ckpt_path)  # one-line errors before any heavy work
    if hp["model"] in EXPORT_LIMITS:
        raise _error(f"model {hp['model']!r} cannot be exported: {EXPORT_LIMITS[hp['model']]}")
    task = load_task(ckpt_path)
    shape = raw_input_shape(task)
    module = _export_module(task)
    # A failed export leaves no half-written file at --output; the suffix is the format's (torch.export
    # refuses to read a .pt2 archive under another name).
    tmp = out.with_name(f"{out.name}.partial{FORMATS[fmt]}")
    result: dict[str, Any] = {"output": str(out), "format": fmt, "input_shape": list(shape)}
    try:
        if fmt == "onnx":
            export_onnx(module, shape, tmp)
            result["max_abs_diff"] = check_onnx(tmp, module, shape)
        elif fmt == "exported_program":
            import torch

            program = trace(module, shape)
            torch.export.save(program, str(tmp))
            result["max_abs_diff"] = check_program(torch.export.load(str(tmp)), module, shape)
        else:
            save_safetensors(task, tmp)
            check_safetensors(tmp, task, shape)
            result["max_abs_diff"] = {"round trip": 0.0}
        tmp.replace(out)
    except AssertionError as e:
        first = " ".join(str(e).split())[:300]
        raise RuntimeError(f"the {fmt} export of {hp['model']!r} does not match eager PyTorch ({first}); nothing was written to {out}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return result


def main(argv: Sequence[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="zoo export", description="Export a zoo checkpoint (with its fitted input transform) and check the file.")
    p.add_argument("--ckpt_path", required=True, help="a .ckpt file written by zoo fit (or an http(s) URL)")
    p.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--output", default=None, help="file to write (default: the checkpoint's path with .onnx, .pt2 or .safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    a = p.parse_args(list(argv))
    r = run_export(a.ckpt_path, a.format, a.output, a.overwrite)
    if a.format == "safetensors":
        check = "read back bit-identical (weights and outputs)"
    else:
        runtime = "onnxruntime" if a.format == "onnx" else "the loaded program"
        diffs = ", ".join(f"batch {b}: {d:.2e}" for b, d in r["max_abs_diff"].items())
        check = f"{runtime} vs eager PyTorch on fresh input, largest |difference| {diffs} (rtol {RTOL:g}, atol {ATOL:g})"
    print(f"wrote {r['output']} (input 'input': (batch, {', '.join(map(str, r['input_shape']))}), raw samples); {check}")
    return 0


if __name__ == "__main__":  # python -m zoo.export
    from zoo import cli_errors

    sys.exit(cli_errors.run(main, sys.argv[1:]))
