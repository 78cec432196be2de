"""``GradientInspector``: see why a network does not learn.

Lightning removed its built-in gradient-norm tracking (``track_grad_norm``), so this callback
computes, every ``log_every_n_steps`` optimizer steps:

* ``grad/<layer>``: L2 norm of the gradient of each layer (a module that owns parameters) and
  ``grad/global_norm``, on UNSCALED gradients. The norms are taken in ``on_before_optimizer_step``:
  Lightning's ``MixedPrecision`` plugin calls ``scaler.unscale_(optimizer)`` after the closure and
  before this hook (``lightning/pytorch/plugins/precision/amp.py``), so under fp16 AMP the values
  are the true gradients; bf16 and fp32 use no scaler at all.
* ``update_ratio/<layer>``: ``||w_after - w_before|| / ||w_before||`` of the optimizer step (Karpathy's
  rule of thumb: around 1e-3 is healthy; much smaller learns nothing, much larger is unstable).
* ``act/dead_frac/<layer>``: share of the units of a ReLU module that output 0 for the whole batch
  (a unit is a channel, dim 1), and ``act/saturated_frac/<layer>``: share of the outputs of a
  Sigmoid or Tanh module within ``saturation_eps`` of the asymptotes (where the derivative vanishes;
  Glorot & Bengio, 2010, "Understanding the difficulty of training deep feedforward neural networks").
  Forward hooks are attached only for the logging steps, so other steps pay nothing.

Alerts (``action="warn"`` warns, ``action="stop"`` also sets ``trainer.should_stop``):

* vanishing: a layer's gradient norm is below ``vanishing_threshold`` or below
  ``vanishing_ratio`` times the largest layer norm of the same step (gradients shrink by the
  activation derivative at every layer of a deep saturating stack, Hochreiter 1991 / Bengio et al.
  1994, so the first layers fall orders of magnitude behind the last ones);
* exploding: the global gradient norm exceeds ``exploding_threshold``;
* dead units: a ReLU module has more than ``dead_threshold`` of its units dead;
* saturation: a Sigmoid/Tanh module has more than ``saturation_threshold`` of its outputs saturated.

Every alert is kept in ``inspector.alerts`` (dicts with ``step``, ``kind``, ``layer``, ``value``).

Non-finite values are checked on EVERY step (one float64 norm per gradient, ``torch.linalg.vector_norm``,
and one scalar sync): a NaN or Inf raises ``NonFiniteGradientError`` in
``on_before_optimizer_step``, i.e. before the optimizer applies the step and before any checkpoint
of that step can be written. The message names the step and the first offending layer in forward
order (found by re-running the forward pass of the batch with hooks, only when it happens). The
parameters are checked on logging steps, at the end of every epoch and, whatever the step, in
``on_save_checkpoint`` before the file is written: so no checkpoint ever holds a non-finite value,
even when a weight turns Inf behind a ReLU that hides it from the loss and the gradients. (A
per-step parameter check would double the per-step work of the inspector, and such a weight
harms nothing until it is saved.) Under fp16 AMP a non-finite gradient is normal (the
GradScaler skips that step and lowers its scale), so there the scaler owns the gradients and the
parameters are checked every step instead.

A gradient-flow picture (mean and max ``|grad|`` per layer, log scale, in forward order) is saved
each epoch as ``<log_dir>/gradient_flow/epoch_XXX.png`` and sent to loggers that take images
(``WandbLogger.log_image``, TensorBoard's ``experiment.add_image``). It is drawn with Pillow, not
matplotlib, to stay within the overhead bar (see ``callbacks/flow_picture.py``); when no logging
step falls in an epoch, its first step is measured for the picture (norms only: no activation
hooks, no weight copy).

Hooks only see activations that are modules (``nn.ReLU``...), not ``F.relu`` calls in ``forward``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn as nn
from lightning.pytorch.callbacks import Callback

from zoo.tasks.distributed import run_dir

from ._images import send_image
from .flow_picture import render_gradient_flow, save_png

RELUS = (nn.ReLU, nn.ReLU6)
SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid)
ACTIONS = ("warn", "stop")


def _norms(tensors, ord: float = 2.0) -> torch.Tensor:
    """Per-tensor norms, shape ``(len(tensors),)``, through public API (``torch.linalg.vector_norm``;
    ``torch._foreach_norm`` is private and may change on an upgrade).

    Computed in float64 (float32 where the device has no float64, MPS): the norm of finite but huge
    float32 values (weights near 1e30 after a learning rate of 1e30) stays finite, so such a run is
    reported as exploding, not as non-finite, and squares summed per layer do not overflow.
    """
    dtype = torch.float32 if tensors[0].device.type == "mps" else torch.float64
    return torch.stack([torch.linalg.vector_norm(t, ord, dtype=dtype) for t in tensors])


class NonFiniteGradientError(RuntimeError):
    """A NaN or Inf appeared in the gradients, parameters or activations."""


class GradientInspector(Callback):
    """Gradient norms, update ratios, dead/saturated units, alerts and NaN detection.

    Args:
        log_every_n_steps: inspect and log every N optimizer steps (on rank zero only).
        vanishing_threshold: absolute layer gradient norm below which a layer "vanishes".
        vanishing_ratio: a layer also vanishes when its norm is below this share of the largest
            layer norm of the step; ``None`` turns the relative test off.
        exploding_threshold: global gradient norm above which gradients "explode".
        dead_threshold: share of dead ReLU units above which a layer is reported.
        saturation_threshold: share of saturated sigmoid/tanh outputs above which a layer is reported.
        saturation_eps: an output within this distance of an asymptote counts as saturated.
        action: ``"warn"`` or ``"stop"`` (warn and set ``trainer.should_stop``).
        check_nonfinite: check every step for NaN/Inf and raise ``NonFiniteGradientError``.
        update_ratio: log the update-to-weight ratios (copies the weights on logging steps).
        activations: attach the activation hooks on logging steps.
        plot: save (and log) the gradient-flow picture.
        plot_every_n_epochs: how often; rendering the picture costs a fixed time per epoch, which
            matters only when epochs are very short (see ``benchmarks/inspector_overhead.py``).
    """

    def __init__(
        self,
        log_every_n_steps: int = 50,
        vanishing_threshold: float = 1e-7,
        vanishing_ratio: float | None = 1e-3,
        exploding_threshold: float = 1e3,
        dead_threshold: float = 0.5,
        saturation_threshold: float = 0.5,
        saturation_eps: float = 0.01,
        action: str = "warn",
        check_nonfinite: bool = True,
        update_ratio: bool = True,
        activations: bool = True,
        plot: bool = True,
        plot_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        if log_every_n_steps < 1:
            raise ValueError(f"GradientInspector: log_every_n_steps must be >= 1, got {log_every_n_steps}")
        if action not in ACTIONS:
            raise ValueError(f"GradientInspector: action must be one of {list(ACTIONS)}, got {action!r}")
        for name, v in (("dead_threshold", dead_threshold), ("saturation_threshold", saturation_threshold)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"GradientInspector: {name} is a share, it must be in [0, 1], got {v}")
        self.log_every_n_steps = int(log_every_n_steps)
        self.vanishing_threshold = float(vanishing_threshold)
        self.vanishing_ratio = vanishing_ratio
        self.exploding_threshold = float(exploding_threshold)
        self.dead_threshold = float(dead_threshold)
        self.saturation_threshold = float(saturation_threshold)
        self.saturation_eps = float(saturation_eps)
        self.action = action
        self.check_nonfinite = check_nonfinite
        self.update_ratio = update_ratio
        self.activations = activations
        self.plot = plot
        self.plot_every_n_epochs = max(int(plot_every_n_epochs), 1)
        self.alerts: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []  # every logged dict, with its "step"
        self._layers: list[tuple[str, list[nn.Parameter]]] = []
        self._params: list[nn.Parameter] = []  # all of them, in layer order
        self._owner: list[int] = []  # layer index of each parameter
        self._inspect = False
        self._full = False  # this inspection is a logging step (not only the picture's sample)
        self._batch: Any = None
        self._hooks: list[Any] = []
        self._act_stats: dict[str, tuple[str, float]] = {}
        self._before: list[torch.Tensor] | None = None
        self._flow: dict[str, list[float]] = {}  # layer -> [sum mean|g|, max |g|, count] this epoch
        self._pending: dict[str, float] | None = None
        self._step = 0

    # ------------------------------------------------------------------------------ set-up

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not in setup(): Lightning calls configure_model() (layers built lazily) after the
        # callbacks' setup, and before on_fit_start.
        self._discover(pl_module)

    def _discover(self, pl_module: nn.Module) -> None:
        # Layers = modules that own trainable parameters directly, in registration order (the
        # forward order of every sequential zoo model); their parameters are grouped per layer.
        self._layers = []
        for name, mod in pl_module.named_modules():
            params = [p for p in mod.parameters(recurse=False) if p.requires_grad]
            if params:
                self._layers.append((name or "model", params))
        self._params = [p for _, ps in self._layers for p in ps]
        self._owner = [i for i, (_, ps) in enumerate(self._layers) for _ in ps]  # layer index of each parameter

    def _plot_epoch(self, trainer) -> bool:
        return self.plot and trainer.current_epoch % self.plot_every_n_epochs == 0

    def _scaler(self, trainer: pl.Trainer):
        return getattr(trainer.precision_plugin, "scaler", None)

    # ------------------------------------------------------------------------- per batch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Again every epoch: fine-tuning unfreezes layers as it goes (e.g. BackboneFinetuning),
        # and a layer frozen at the start must show up once it trains. A walk over the modules.
        self._discover(pl_module)
        # Lightning steps the optimizer at the end of an epoch even mid-accumulation: nothing carries over
        self._remove_hooks()
        self._inspect, self._pending, self._before = False, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch  # a reference only: used to locate a non-finite value if one appears
        if self._inspect:  # still waiting for the optimizer step of an accumulation window
            return
        step = trainer.global_step
        self._full = step % self.log_every_n_steps == 0
        self._inspect = self._full or (batch_idx == 0 and self._plot_epoch(trainer))
        self._step = step
        if self._full and self.activations:
            self._attach_activation_hooks(pl_module)

    def _attach_activation_hooks(self, pl_module: nn.Module) -> None:
        self._act_stats = {}
        eps = self.saturation_eps

        def relu_hook(name):
            def hook(mod, inp, out):
                with torch.no_grad():
                    # a unit (channel, dim 1) is dead when it outputs 0 for every sample and position
                    o = out.detach()
                    per_unit = o.transpose(0, 1).reshape(o.shape[1], -1) if o.dim() > 1 else o[None]  # (units, N*...)
                    dead = (per_unit.amax(dim=1) <= 0).float().mean()
                    self._act_stats[name] = ("dead_frac", dead)

            return hook

        def sat_hook(name, lo, hi):
            def hook(mod, inp, out):
                with torch.no_grad():
                    o = out.detach()
                    sat = ((o <= lo + eps) | (o >= hi - eps)).float().mean()
                    self._act_stats[name] = ("saturated_frac", sat)

            return hook

        for name, mod in pl_module.named_modules():
            if isinstance(mod, RELUS):
                self._hooks.append(mod.register_forward_hook(relu_hook(name)))
            elif isinstance(mod, (nn.Sigmoid, nn.Hardsigmoid)):
                self._hooks.append(mod.register_forward_hook(sat_hook(name, 0.0, 1.0)))
            elif isinstance(mod, (nn.Tanh, nn.Hardtanh)):
                lo, hi = (getattr(mod, "min_val", -1.0), getattr(mod, "max_val", 1.0))
                self._hooks.append(mod.register_forward_hook(sat_hook(name, lo, hi)))

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # This runs every step, so it is kept to one norm per gradient and one scalar sync;
        # everything else waits for the inspected steps (benchmarks/inspector_overhead.py).
        tensors = [p.grad for p in self._params if p.grad is not None]
        if not tensors:
            return
        norms = None
        if self.check_nonfinite or self._inspect:
            norms = _norms(tensors)  # (n_params_with_grad,)
        if self.check_nonfinite:
            amp = self._scaler(trainer) is not None  # fp16 AMP: the scaler owns non-finite gradients
            # Parameters: every step under AMP; otherwise on logging steps, at epoch ends and before
            # every checkpoint (on_save_checkpoint), which is what keeps non-finite values out of files.
            pnorms = _norms(self._params) if amp or self._full else None
            # a sum of norms is finite iff every norm is (NaN and Inf propagate): one scalar to sync
            total = norms.sum() if pnorms is None else pnorms.sum() if amp else norms.sum() + pnorms.sum()
            # .item() + math.isfinite: the scalar comes to the host once, no further tensor op
            if not math.isfinite(total.item()):
                self._raise_nonfinite(trainer, pl_module, "parameter" if self._bad_params() else "gradient")
        if not self._inspect:
            return
        grads = [(i, p.grad) for i, p in zip(self._owner, self._params) if p.grad is not None]
        # per-layer L2 norm = sqrt(sum of squared parameter norms)
        idx = torch.tensor([i for i, _ in grads], device=norms.device)
        sq = torch.zeros(len(self._layers), dtype=norms.dtype, device=norms.device).index_add_(0, idx, norms.square())
        layer_norm = sq.sqrt().cpu()
        has = torch.zeros(len(self._layers), dtype=torch.bool).index_fill_(0, idx.cpu(), True)
        # mean and max |grad| per layer for the gradient-flow picture
        l1 = _norms(tensors, 1)
        linf = _norms(tensors, math.inf)
        numel = torch.tensor([float(g.numel()) for g in tensors], dtype=l1.dtype, device=l1.device)
        n = len(self._layers)
        l1_l = torch.zeros(n, dtype=l1.dtype, device=l1.device).index_add_(0, idx, l1).cpu()
        num_l = torch.zeros(n, dtype=l1.dtype, device=l1.device).index_add_(0, idx, numel).cpu()
        max_l = torch.zeros(n, dtype=l1.dtype, device=l1.device).scatter_reduce_(0, idx, linf, "amax", include_self=False).cpu()
        metrics: dict[str, float] = {}
        for i, (name, _) in enumerate(self._layers):
            if not has[i]:
                continue
            metrics[f"grad/{name}"] = float(layer_norm[i])
            f = self._flow.setdefault(name, [0.0, 0.0, 0])
            f[0] += float(l1_l[i] / num_l[i])
            f[1] = max(f[1], float(max_l[i]))
            f[2] += 1
        metrics["grad/global_norm"] = float(sq.sum().sqrt())
        self._pending = metrics
        self._layer_norm, self._has = layer_norm, has
        if self.update_ratio and self._full:
            self._before = [p.detach().clone() for p in self._params]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._inspect:
            return
        if getattr(self, "_pending", None) is None and trainer.global_step == self._step:
            return  # accumulating gradients: the optimizer step (and its norms) comes with a later batch
        self._remove_hooks()
        self._inspect = False
        metrics = getattr(self, "_pending", None)
        self._pending = None
        if metrics is None:  # the step was skipped (no gradients)
            return
        if self._before is not None:
            after = [p.detach() for p in self._params]
            d = _norms([a - b for a, b in zip(after, self._before)])
            w = _norms(self._before)
            owner = torch.tensor(self._owner, device=d.device)
            n = len(self._layers)
            dl = torch.zeros(n, dtype=d.dtype, device=d.device).index_add_(0, owner, d.square()).sqrt()
            wl = torch.zeros(n, dtype=w.dtype, device=d.device).index_add_(0, owner, w.square()).sqrt()
            ratio = (dl / wl.clamp_min(1e-12)).cpu()
            for i, (name, _) in enumerate(self._layers):
                metrics[f"update_ratio/{name}"] = float(ratio[i])
            self._before = None
        for name, (kind, v) in self._act_stats.items():
            metrics[f"act/{kind}/{name}"] = float(v)
        self._act_stats = {}
        # the step that was inspected (global_step has already advanced past it)
        step = self._step
        if step % self.log_every_n_steps != 0:
            return  # inspected only for the epoch's gradient-flow picture
        self.last_metrics = metrics
        self.history.append({"step": step, **metrics})
        self._check_alerts(trainer, step, metrics)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    # ----------------------------------------------------------------------------- alerts

    def _alert(self, trainer, step: int, kind: str, layer: str, value: float, message: str) -> None:
        self.alerts.append({"step": step, "kind": kind, "layer": layer, "value": value})
        if trainer.is_global_zero:
            warnings.warn(f"GradientInspector, step {step}: {message}", RuntimeWarning, stacklevel=2)
        if self.action == "stop" and not trainer.should_stop:
            trainer.should_stop = True
            if trainer.is_global_zero:
                print(f"GradientInspector: stopping the run at step {step} ({kind} in {layer}); set action='warn' to only warn")

    def _check_alerts(self, trainer, step: int, metrics: dict[str, float]) -> None:
        norms = {k[len("grad/"):]: v for k, v in metrics.items() if k.startswith("grad/") and k != "grad/global_norm"}
        top = max(norms.values(), default=0.0)
        for layer, v in norms.items():
            rel = self.vanishing_ratio is not None and top > 0 and v < self.vanishing_ratio * top
            if v < self.vanishing_threshold or rel:
                self._alert(
                    trainer, step, "vanishing", layer, v,
                    f"vanishing gradient in {layer}: norm {v:.2e} (largest layer {top:.2e}); "
                    "try ReLU-family activations, batch norm, residual connections or a better init",
                )
        g = metrics.get("grad/global_norm", 0.0)
        if g > self.exploding_threshold:
            self._alert(
                trainer, step, "exploding", "global", g,
                f"exploding gradient: global norm {g:.2e} > {self.exploding_threshold:g}; "
                "lower the learning rate or clip gradients (trainer.gradient_clip_val)",
            )
        # activation alerts: (metric prefix, alert kind, threshold, advice)
        act_rules = (
            ("act/dead_frac/", "dead_units", self.dead_threshold,
             "of the ReLU units in {layer} are dead (zero for the whole batch); lower the learning rate or use LeakyReLU/ELU"),
            ("act/saturated_frac/", "saturated", self.saturation_threshold,
             "of the outputs of {layer} are saturated; normalise the inputs, use a Xavier init or a non-saturating activation"),
        )
        for key, v in metrics.items():
            for prefix, kind, threshold, advice in act_rules:
                if key.startswith(prefix) and v > threshold:
                    layer = key[len(prefix):]
                    self._alert(trainer, step, kind, layer, v, f"{v:.0%} " + advice.format(layer=layer))

    # -------------------------------------------------------------------------- NaN / Inf

    def _bad_params(self) -> list[str]:
        return [n for n, ps in self._layers if any(not bool(torch.isfinite(p).all()) for p in ps)]

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Lightning builds the checkpoint dict, calls this hook, and only then writes the file:
        # raising here is what guarantees that no checkpoint holds a non-finite weight.
        if not self.check_nonfinite:
            return
        bad = [k for k, v in checkpoint.get("state_dict", {}).items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            step = trainer.global_step
            self.alerts.append({"step": step, "kind": "nonfinite", "layer": bad[0], "value": float("nan")})
            raise NonFiniteGradientError(
                f"GradientInspector: non-finite parameter {bad[0]} at step {step} (of {len(bad)} non-finite "
                "tensors); the checkpoint was NOT written, earlier checkpoints are intact. Lower the learning "
                "rate, clip gradients, or check the inputs and the loss."
            )

    def _raise_nonfinite(self, trainer, pl_module, what: str) -> None:
        self._remove_hooks()
        step = trainer.global_step
        layer, where = self._locate_nonfinite(pl_module)
        self.alerts.append({"step": step, "kind": "nonfinite", "layer": layer, "value": float("nan")})
        raise NonFiniteGradientError(
            f"GradientInspector: non-finite {what} at step {step}; first offending layer (forward order): "
            f"{layer} ({where}). The run stops before the optimizer step, so no checkpoint holds the "
            "non-finite values. Lower the learning rate, clip gradients, or check the inputs and the loss."
        )

    def _locate_nonfinite(self, pl_module: nn.Module) -> tuple[str, str]:
        # 1) non-finite outputs: re-run the forward pass of this batch with hooks on every module
        #    (only now, when it happened), so the first hook that fires gives the forward order.
        first: list[str] = []
        hooks = []

        def make(name):
            def hook(mod, inp, out):
                if not first and isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
                    first.append(name)

            return hook

        mods = [(n, m) for n, m in pl_module.named_modules() if n and not list(m.children())]
        for name, mod in mods:
            hooks.append(mod.register_forward_hook(make(name)))
        try:
            x = self._batch[0] if isinstance(self._batch, (list, tuple)) else self._batch
            if isinstance(x, torch.Tensor):
                with torch.no_grad():
                    pl_module(x)
        except Exception:  # the module may need more than x; fall back to the parameter checks
            pass
        finally:
            for h in hooks:
                h.remove()
        # 2) non-finite parameters, 3) non-finite gradients (a backward-only problem)
        bad_param = self._bad_params()
        if bad_param and (not first or first[0] in bad_param or first[0].startswith(bad_param[0])):
            return bad_param[0], "non-finite parameters"
        if first:
            return first[0], "first module whose output is non-finite"
        bad_grad = [n for n, ps in self._layers if any(p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in ps)]
        if bad_grad:
            return bad_grad[-1], "non-finite gradient, outputs finite: the backward pass of this layer"
        return "unknown", "could not locate"

    # ---------------------------------------------------------------------- flow picture

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Parameters once per epoch too (runs before ModelCheckpoint's epoch-end save, which
        # Lightning orders last), so a run without checkpoints is still told about an Inf weight.
        if self.check_nonfinite and self._params:
            if not math.isfinite(_norms(self._params).sum().item()):
                self._raise_nonfinite(trainer, pl_module, "parameter")
        if not self._plot_epoch(trainer) or not self._flow:
            self._flow = {}
            return
        flow, self._flow = self._flow, {}
        if not trainer.is_global_zero:
            return
        names = [n for n, _ in self._layers if n in flow]
        means = [flow[n][0] / max(flow[n][2], 1) for n in names]
        maxes = [flow[n][1] for n in names]
        img = render_gradient_flow(names, means, maxes, f"Gradient flow, epoch {trainer.current_epoch} (layers in forward order)")
        out = run_dir(trainer) / "gradient_flow"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"epoch_{trainer.current_epoch:03d}.png"
        save_png(img, path)
        self.last_plot = path
        send_image(trainer, "grad/flow", path, img)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._remove_hooks()
        self._before = None
        self._batch = None
