"""Memory of one training step, estimated before the run (``zoo info``); imports without Lightning.

Nothing here is a rule of thumb: the network is built on PyTorch's ``meta`` device (shapes and
dtypes, no storage, no arithmetic), so any batch size costs nothing to estimate, and

* parameters, buffers and gradients are the byte sizes of the meta tensors;
* optimizer state is what the optimizer allocates in a real ``step()`` on the meta parameters;
* activations are the tensors autograd saves for backward during a real forward pass, collected
  with ``torch.autograd.graph.saved_tensors_hooks`` and counted once per storage (a tensor saved by
  two operations, or saved together with its views, is one allocation), parameters excluded
  (counted above), plus the network output.

Precision (Lightning's ``trainer.precision`` names): ``32-true`` and ``64-true`` keep everything in
that dtype; ``16-mixed`` and ``bf16-mixed`` keep float32 weights, gradients and optimizer state and
run the forward in the half type (measured with a half copy of the network on the meta device, as
autocast computes matrix products and convolutions), plus autocast's half copies of the weights;
``16-true`` and ``bf16-true`` keep everything in the half type.

What the total leaves out: allocator rounding and caching (CUDA rounds to 512 bytes and keeps
freed blocks), the CUDA context (~300-500 MiB per process on a GPU, not tensor memory), gradients of
activations alive during backward, and optimizer temporaries. On CPU the total is checked against
the measured peak of a real step (tests/test_memory.py, ``benchmarks/memory.py``); GPU: not measured.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten
from torch.utils._python_dispatch import TorchDispatchMode

PRECISIONS: dict[str, tuple[torch.dtype, torch.dtype]] = {
    # name: (dtype of weights, gradients and optimizer state; dtype the forward computes in)
    "32-true": (torch.float32, torch.float32),
    "32": (torch.float32, torch.float32),
    "64-true": (torch.float64, torch.float64),
    "16-mixed": (torch.float32, torch.float16),
    "bf16-mixed": (torch.float32, torch.bfloat16),
    "16-true": (torch.float16, torch.float16),
    "bf16-true": (torch.bfloat16, torch.bfloat16),
}


@dataclass
class MemoryEstimate:
    """Bytes of one training step, by kind (``rows()`` for printing)."""

    model: str
    batch_size: int
    precision: str
    optimizer: str
    parameters: int
    buffers: int
    gradients: int
    optimizer_state: int
    activations: int
    autocast_weights: int = 0
    peak: int = 0
    num_params: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def parts(self) -> int:
        return self.parameters + self.buffers + self.gradients + self.optimizer_state + self.activations + self.autocast_weights

    @property
    def total(self) -> int:
        """The peak of the simulated step (at least the sum of the parts that are alive together at
        the end of the forward pass, which is a lower bound)."""
        return max(self.peak, self.parts)

    def rows(self) -> list[tuple[str, int]]:
        rows = [
            ("parameters", self.parameters),
            ("buffers", self.buffers),
            ("gradients", self.gradients),
            (f"optimizer state ({self.optimizer})", self.optimizer_state),
            (f"activations (batch {self.batch_size})", self.activations),
        ]
        if self.autocast_weights:
            rows.append(("half weight copies (autocast)", self.autocast_weights))
        if not self.peak:  # mixed precision: the step is not simulated, the parts are the total
            return rows + [("total (sum of the above)", self.total)]
        return rows + [("sum of the above", self.parts), ("total: peak of the step", self.total)]

    def format(self) -> str:
        head = (f"{self.model}: one training step, batch {self.batch_size}, precision {self.precision}, "
                f"{self.num_params:,} parameters")
        width = max(len(name) for name, _ in self.rows())
        lines = [head] + [f"  {name.ljust(width)}  {human(b):>10}  ({b:,} bytes)" for name, b in self.rows()]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def make_optimizer(name: str, params: Sequence[torch.Tensor], lr: float = 1e-3, momentum: float = 0.9,
                   **kwargs: Any) -> torch.optim.Optimizer:
    """The zoo's optimizers by name (``zoo.tasks.OPTIMIZERS``), as ``ZooTask.configure_optimizers``
    builds them (SGD and RMSprop with ``momentum``; no momentum state when it is 0)."""
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, **kwargs)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, **kwargs)
    classes = {"adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise ValueError(f"optimizer {name!r} is not one of the zoo's: {['sgd', 'rmsprop', *classes]}")
    return classes[name](params, lr=lr, **kwargs)


class _LiveStorage(TorchDispatchMode):
    """Bytes of live tensor storage while it is active, and their peak.

    Hand-written (PyTorch's ``MemTracker`` does the same but is a private API) because the
    estimate needs it on the meta device: every storage an operation returns is counted until its
    Python storage object dies (PyTorch keeps that object alive exactly as long as the storage).
    """

    def __init__(self, existing: Sequence[torch.Tensor] = ()) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0
        for t in existing:
            self._add(t)

    def _add(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = st._cdata
        if key in self.live:
            return
        self.live[key] = st.nbytes()
        self.current += self.live[key]
        self.peak = max(self.peak, self.current)
        weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata  # the StorageImpl: shared by a tensor and all its views


def estimate(build: Callable[[], nn.Module], input_shape: Sequence[int], batch_size: int, precision: str = "32-true",
             optimizer: str = "adam", optimizer_kwargs: dict[str, Any] | None = None, name: str = "model") -> MemoryEstimate:
    """Estimate one training step of ``build()`` on ``(batch_size, *input_shape)`` float inputs.

    ``build`` is called under ``torch.device("meta")``, so it must create its tensors on the default
    device (every ``zoo`` model does). See the module docstring for what is counted.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    param_dtype, compute_dtype = PRECISIONS[precision]
    with torch.device("meta"):
        net = build()
    net = net.to(param_dtype)
    params = list(net.parameters())
    trainable = [p for p in params if p.requires_grad]
    param_keys = {_storage_key(p) for p in params}

    # Optimizer state: whatever a real step allocates (Adam: two moments; SGD: a momentum buffer).
    for p in trainable:
        p.grad = torch.zeros_like(p)
    opt_bytes = 0
    if trainable:
        opt = make_optimizer(optimizer, trainable, **(optimizer_kwargs or {}))
        opt.step()
        opt_bytes = _nbytes(t for state in opt.state.values() for t in state.values() if torch.is_tensor(t) and t.dim() > 0)
    for p in trainable:
        p.grad = None

    # Activations: what autograd keeps for backward, once per storage.
    fwd = net if compute_dtype == param_dtype else copy.deepcopy(net).to(compute_dtype)
    fwd_param_keys = {_storage_key(p) for p in fwd.parameters()} | param_keys
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in fwd_param_keys:
            saved[key] = max(saved.get(key, 0), t.untyped_storage().nbytes())
        return t

    x = torch.empty(batch_size, *input_shape, device="meta", dtype=compute_dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fwd.train()(x)
    outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if torch.is_tensor(o)]
    act_bytes = sum(saved.values()) + sum(o.untyped_storage().nbytes() for o in outs if _storage_key(o) not in saved)

    # The peak: a whole steady-state step (state from the step above exists) simulated on the meta
    # device, with every storage followed from creation to release; this catches what the parts
    # miss (gradients of activations during backward, optimizer temporaries). True precisions only.
    peak = 0
    if trainable and compute_dtype == param_dtype:
        existing = [*params, *net.buffers(), *(t for s in opt.state.values() for t in s.values() if torch.is_tensor(t))]
        with _LiveStorage(existing) as live:
            _training_step(net, opt, torch.empty(batch_size, *input_shape, device="meta", dtype=compute_dtype))
        peak = live.peak

    autocast = _nbytes(trainable) * torch.finfo(compute_dtype).bits // torch.finfo(param_dtype).bits if compute_dtype != param_dtype else 0
    notes = []
    if compute_dtype != param_dtype:
        notes.append("mixed precision: forward measured with a half copy of the network on the meta device; "
                     "the step's peak is simulated for true precisions only")
    return MemoryEstimate(
        model=name, batch_size=batch_size, precision=precision, optimizer=optimizer,
        parameters=_nbytes(params), buffers=_nbytes(net.buffers()), gradients=_nbytes(trainable),
        optimizer_state=opt_bytes, activations=act_bytes, autocast_weights=autocast, peak=peak,
        num_params=sum(p.numel() for p in params), notes=notes,
    )


def _training_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """Forward, a loss (cross-entropy for several outputs, squared error for one), backward, step."""
    out = net.train()(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if out.dim() == 2 and out.shape[1] > 1:
        loss = nn.functional.cross_entropy(out, torch.zeros(len(out), dtype=torch.long, device=out.device))
    else:
        loss = out.float().pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def estimate_registered(name: str, batch_size: int, precision: str = "32-true", optimizer: str = "adam",
                        input_shape: Sequence[int] | None = None, **model_kwargs: Any) -> MemoryEstimate:
    """``estimate`` for a registered architecture at its default input shape (``zoo.model_info``)."""
    import zoo

    info = zoo.model_info(name)
    shape = tuple(input_shape or info["input_shape"])
    classes = info.get("num_classes")
    kwargs = {"num_classes": 10 if classes is None else classes, "input_shape": shape, **model_kwargs}  # 0: a generator
    return estimate(lambda: zoo.create_model(name, **kwargs), shape, batch_size, precision, optimizer, name=name)


def measure_cpu_peak(build: Callable[[], nn.Module], input_shape: Sequence[int], batch_size: int,
                     optimizer: str = "adam") -> int:
    """Peak bytes of live tensors during one REAL float32 training step on CPU (the second, so the
    optimizer state exists: forward, the loss of ``_training_step``, backward, optimizer step).

    Counted with PyTorch's ``MemTracker`` (``torch.distributed._tools.mem_tracker``, PyTorch >= 2.5),
    which follows every tensor storage the step creates and frees; it counts storage bytes, as the
    estimate does, so the two are comparable (the process's RSS is not: allocator caching)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)
    net = build().train()
    opt = make_optimizer(optimizer, [p for p in net.parameters() if p.requires_grad])
    _training_step(net, opt, torch.randn(batch_size, *input_shape))  # the first step creates the optimizer state
    tracker = MemTracker()
    tracker.track_external(net, opt)
    with tracker:
        _training_step(net, opt, torch.randn(batch_size, *input_shape))
    return int(tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])


def _from_config(path: str, batch_size: int | None, optimizer: str | None, precision: str | None):
    """(estimate arguments) for the network a ``zoo fit`` config trains, at the shape it sees."""
    import cli  # Lightning: only for configs; ``zoo info <model>`` does not need it

    with warnings.catch_warnings():  # LightningCLI warns that sys.argv (zoo info ...) is not what it parses
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
        c = cli.ZooCLI(args=["--config", path], run=False)
    task, hp = c.model, c.model.hparams
    shape = tuple(task.preprocess.output_shape) if hp.get("preprocessing") else tuple(hp.input_shape)
    kwargs = {**task.net_kwargs(hp.num_classes), **(hp.model_kwargs or {})}
    import zoo

    build = lambda: zoo.create_model(hp.model, input_shape=shape, **kwargs)  # noqa: E731
    bs = batch_size or getattr(c.datamodule, "batch_size", None) or 32
    prec = precision or str(c.trainer.precision)
    return build, shape, bs, prec, optimizer or hp.optimizer, f"{hp.model} ({path})"


def main(argv: Sequence[str]) -> int:
    """``zoo info <model or config> [--batch-size B] [--precision P] [--optimizer O] [--measure]``."""
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(prog="zoo info", description="Memory of one training step, estimated on the meta device.")
    p.add_argument("target", help="a registered model name (zoo list) or a config file")
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch size (default: the config's, else 32)")
    p.add_argument("--precision", choices=list(PRECISIONS), default=None, help="Lightning precision (default: the config's, else 32-true)")
    p.add_argument("--optimizer", default=None, help="sgd, adagrad, adadelta, rmsprop, adam, adamw (default: the config's, else adam)")
    p.add_argument("--measure", action="store_true", help="also run one real float32 step on CPU and print its measured peak")
    a = p.parse_args(list(argv))
    if a.target.endswith((".yaml", ".yml")) or Path(a.target).is_file():
        if not Path(a.target).is_file():
            raise SystemExit(f"zoo info: config {a.target!r} not found; give a config file or a model name from `zoo list`")
        build, shape, bs, prec, opt, name = _from_config(a.target, a.batch_size, a.optimizer, a.precision)
    else:
        import zoo

        if a.target not in zoo.list_models():
            raise SystemExit(f"zoo info: unknown model {a.target!r}; `zoo list` prints the registered names, or give a config file")
        info = zoo.model_info(a.target)
        shape = tuple(info["input_shape"])
        kwargs = {"num_classes": 10 if info.get("num_classes") is None else info["num_classes"], "input_shape": shape}  # 0: a generator
        build = lambda: zoo.create_model(a.target, **kwargs)  # noqa: E731
        bs, prec, opt, name = a.batch_size or 32, a.precision or "32-true", a.optimizer or "adam", a.target
    est = estimate(build, shape, bs, prec, opt, name=name)
    print(est.format())
    if a.measure:
        measured = measure_cpu_peak(build, shape, bs, opt)
        print(f"  measured peak of a real float32 step on CPU: {human(measured)} ({measured:,} bytes); "
              f"estimate / measured = {est.total / measured:.3f}")
    return 0
