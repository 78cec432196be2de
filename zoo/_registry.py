"""Model registry: one name -> one constructor of a pure ``nn.Module``.

Modelled on timm's ``timm/models/_registry.py``: every architecture family registers its variants
with a decorator, so the CLI, the tests and the benchmarks can loop over the registry instead of
over hand-kept lists. Unlike timm we also keep a small model card (task, default input shape,
paper) with each entry, because ``zoo list`` and ``model_info`` must answer without training.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

__all__ = [
    "ModelEntry",
    "register_model",
    "list_models",
    "create_model",
    "model_info",
    "UnknownModelError",
]


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., nn.Module]
    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    paper: str
    family: str
    default_config: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    output: str = "logits"  # what forward returns: "logits" (num_classes wide), "reconstruction" (input-shaped), "image" (a generator's output_shape)


_REGISTRY: dict[str, ModelEntry] = {}
OUTPUTS = ("logits", "reconstruction", "image")


def register_model(
    *,
    task: str,
    input_shape: tuple[int, ...],
    paper: str,
    num_classes: int = 10,
    default_config: str | None = None,
    name: str | None = None,
    output: str = "logits",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model constructor under ``name`` (default: the function's name).

    ``input_shape`` and ``num_classes`` are the defaults the constructor uses when called with no
    arguments; ``model_info`` builds the model with them to count parameters. ``output`` says what
    ``forward`` returns: ``"logits"`` (``(N, num_classes)``, or the embedding when ``num_classes`` is 0)
    or ``"reconstruction"`` (``(N, *input_shape)``: autoencoders, RBMs).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY:
            other = _REGISTRY[key].fn
            raise ValueError(
                f"model name {key!r} is already registered by {other.__module__}.{other.__qualname__}; "
                "pick another name for the new variant"
            )
        _REGISTRY[key] = ModelEntry(
            name=key,
            fn=fn,
            task=task,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            paper=paper,
            family=fn.__module__.rsplit(".", 1)[-1],
            default_config=default_config,
            output=output,
        )
        return fn

    return deco


def _entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} `zoo list` (or zoo.list_models()) shows every registered name."
        ) from None


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style ``pattern`` such as ``'vgg*'``."""
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered pure ``nn.Module`` ``name``; ``kwargs`` go to its constructor."""
    return _entry(name).fn(**kwargs)


def _count_params(e: ModelEntry) -> int:
    """Parameters of ``e`` at its defaults, counted on the meta device: shapes only, no memory and
    no initialisation (listing resnet50 used to allocate and initialise its 23.5M weights)."""
    import torch

    try:
        with torch.device("meta"):
            model = e.fn()
    except Exception:  # noqa: BLE001 - a constructor that computes with its weights needs real ones
        model = e.fn()
    return sum(p.numel() for p in model.parameters())


def model_info(name: str) -> dict[str, Any]:
    """Model card: task, default input shape, parameter count (at the defaults), paper, config."""
    e = _entry(name)
    return {
        "name": e.name,
        "family": e.family,
        "task": e.task,
        "input_shape": e.input_shape,
        "num_classes": e.num_classes,
        "num_params": _count_params(e),
        "paper": e.paper,
        "default_config": e.default_config,
        "output": e.output,
        # The shape of one sample of forward's output, so callers (and the registry tests) need no
        # per-family knowledge: classifiers give num_classes scores, autoencoders an input-shaped image.
        # Generators ("image") map a code to an image of the shape they were built for.
        "output_shape": _output_shape(e),
    }


def _output_shape(e: ModelEntry) -> tuple[int, ...]:
    if e.output == "reconstruction":
        return tuple(e.input_shape)
    if e.output == "image":
        import torch

        with torch.device("meta"):
            return tuple(e.fn().output_shape)
    return (e.num_classes,)
