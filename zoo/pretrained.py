"""Pretrained backbones for fine-tuning: torchvision's weights API, timm, and zoo checkpoints.

Yosinski, Clune, Bengio & Lipson (2014), "How transferable are features in deep neural networks?"
(NeurIPS) is why this exists: features learnt on a large data set transfer, the lower layers more
than the upper ones, so a new head on a pretrained network learns a new task from few images.

``build_backbone`` returns a ``Backbone``: the network with its classifier replaced for the new
classes, the input transform the pretrained weights expect (a plain-dict spec, so a checkpoint
predicts on raw images), the layer groups from the input to the head (for freezing strategies and
discriminative learning rates) and a loader of the pretrained weights. Loading never downloads
unless asked to (``download=True``); a missing file is a one-line error naming the file and where
to put it. Every weights file is read with ``torch.load(weights_only=True)`` (or safetensors).

Imports no Lightning (like every architecture module).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import torch
import torch.nn as nn

SOURCES = ("torchvision", "timm", "zoo")


class WeightsError(ValueError):
    """Pretrained weights that are missing, unreadable or do not fit the architecture (one line)."""


# ----------------------------------------------------------------------------------- transform


class PretrainedImageTransform(nn.Module):
    """The evaluation preprocessing that comes with pretrained weights, as part of the model.

    Raw images ``(N, C, H, W)`` with values 0..255 (uint8 as the image DataModules yield them, any
    ``H`` and ``W``) -> scale to [0, 1] -> resize the shorter side to ``resize`` -> centre crop
    ``crop`` -> standardise with the weights' ``mean``/``std``. That is torchvision's
    ``ImageClassification`` preset (and timm's eval transform with ``crop_pct``), applied to batched
    tensors with torchvision's own functional ops, so predictions match the weights' recipe. Grey
    images (``C == 1``) are repeated to three channels when the weights expect three.

    ``spec`` keys: ``kind`` (``"pretrained_image"``), ``input_shape`` (raw ``[C, H, W]`` the data
    yields; only ``C`` is checked), ``resize``, ``crop`` (``[h, w]``), ``mean``, ``std``,
    ``interpolation`` (``"bilinear"`` or ``"bicubic"``).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        from torchvision.transforms import InterpolationMode

        self.spec = dict(spec)
        self.raw_shape = tuple(int(s) for s in spec["input_shape"])
        self.resize = int(spec["resize"])
        self.crop = [int(s) for s in spec["crop"]]
        self.interpolation = InterpolationMode(spec.get("interpolation", "bilinear"))
        c = len(spec["mean"])
        self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32).view(1, c, 1, 1), persistent=False)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.mean.shape[1], *self.crop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        if x.dim() != 4 or x.shape[1] not in (1, self.mean.shape[1]):
            raise ValueError(
                f"expected raw images of shape (N, {self.raw_shape[0]}, H, W) with values 0..255, got {tuple(x.shape)}"
            )
        x = x.float() / 255.0  # (N, C, H, W) in [0, 1]
        if x.shape[1] != self.mean.shape[1]:
            x = x.expand(-1, self.mean.shape[1], -1, -1)  # grey -> RGB
        x = TF.resize(x, [self.resize], interpolation=self.interpolation, antialias=True)  # shorter side
        x = TF.center_crop(x, self.crop)  # (N, C, h, w)
        return (x - self.mean) / self.std


def make_transform(spec: dict[str, Any]) -> nn.Module:
    """Input transform from a plain spec: the pretrained-image kind, or the zoo's fitted one."""
    if spec.get("kind") == "pretrained_image":
        return PretrainedImageTransform(spec)
    from .layers import InputTransform

    return InputTransform(spec)


# ------------------------------------------------------------------------------------ backbone


@dataclass
class Backbone:
    net: nn.Module  # raw-free network: takes what ``preprocessing`` outputs
    preprocessing: dict[str, Any] | None  # spec of the input transform (None: fit it on the data)
    head: str  # name of the top-level child holding the new classifier
    load_pretrained: Callable[[], None] | None  # copies the pretrained weights into ``net``
    resolved: dict[str, Any]  # what rebuilds the same architecture without any file


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub`` keeps the file of ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file, never unpickling code."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise WeightsError(f"cannot read weights file {str(path)!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); replace the file") from None
    for key in ("state_dict", "model", "state_dict_ema"):  # common wrappers
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError(f"weights file {str(path)!r} holds a {type(sd).__name__}, not a state dict")
    return sd


def _load_into(net: nn.Module, sd: dict[str, torch.Tensor], path: Path, what: str, skip_prefix: str | None = None) -> None:
    """``load_state_dict`` with a one-line error when the weights do not fit the architecture."""
    own = net.state_dict()
    if skip_prefix is not None:  # the replaced classifier: the pretrained one has other classes
        sd = {k: v for k, v in sd.items() if not k.startswith(skip_prefix)}
        own = {k: v for k, v in own.items() if not k.startswith(skip_prefix)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k!r}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)})")
        raise WeightsError(
            f"weights file {str(path)!r} does not fit {what}: {', '.join(parts)} keys; "
            "use the weights of this architecture or change model.init_args.backbone"
        )
    net.load_state_dict(sd, strict=skip_prefix is None)


def _replace_last_linear(net: nn.Module, num_classes: int) -> str:
    """Replace the last ``nn.Linear`` of ``net`` (the classifier of torchvision's classifiers) with a
    fresh one for ``num_classes``; return the name of the top-level child holding it."""
    last = None
    for name, mod in net.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        raise WeightsError(f"{type(net).__name__} has no nn.Linear classifier to replace; pick a classification model")
    parent_name, _, attr = last.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    return last.split(".")[0]


def _unknown(name: str, choices: Sequence[str], what: str) -> WeightsError:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see {what}"
    return WeightsError(f"model.init_args.backbone: unknown {what.split()[0]} model {name!r}{hint}")


def _missing_file(path: Path, url: str | None, how: str) -> WeightsError:
    src = f" (from {url})" if url else ""
    return WeightsError(
        f"pretrained weights file {str(path)!r} is missing{src}; put the file there "
        f"({how}), set model.init_args.weights_file to a local copy, or set model.init_args.download true when online"
    )


def _torchvision(name: str, weights: str | None, weights_file: str | None, download: bool, num_classes: int, input_shape) -> Backbone:
    from torchvision import models

    names = models.list_models(module=models)
    if name not in names:
        raise _unknown(name, names, "torchvision models.list_models()")
    w = None
    if weights is None and weights_file:
        raise WeightsError(
            f"model.init_args.weights_file {weights_file!r} needs model.init_args.weights (e.g. DEFAULT): the file's "
            "preprocessing comes from the weights it is a copy of"
        )
    if weights is not None:
        enum = models.get_model_weights(name)
        try:
            w = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise WeightsError(
                f"model.init_args.weights: {name} has no weights {weights!r}; choose one of {[m.name for m in enum]} or DEFAULT"
            ) from None
    net = models.get_model(name, weights=None, num_classes=len(w.meta["categories"]) if w else num_classes)
    spec = None
    if w is not None:
        t = w.transforms()  # torchvision's ImageClassification preset: the weights' own preprocessing
        spec = {
            "kind": "pretrained_image",
            "input_shape": list(input_shape),
            "resize": int(t.resize_size[0]),
            "crop": [int(t.crop_size[0])] * 2,
            "mean": [float(v) for v in t.mean],
            "std": [float(v) for v in t.std],
            "interpolation": t.interpolation.value,
        }
    head = _replace_last_linear(net, num_classes) if w is not None else _classifier_child(net)
    head_prefix = _last_linear_name(net) + "."  # the new classifier: not in the pretrained file
    path = Path(weights_file) if weights_file else (hub_checkpoint_path(w.url) if w else None)

    def load() -> None:
        assert w is not None and path is not None
        if not path.is_file():
            if download and not weights_file:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(w.url, str(path), progress=False)
            else:
                raise _missing_file(path, w.url, "torch.hub's cache $TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to ~/.cache/torch")
        _load_into(net, _read_state_dict(path), path, f"torchvision {name} ({w})", skip_prefix=head_prefix)

    loaded = False
    if w is not None and path is not None and (path.is_file() or not download or weights_file):
        load()  # now, so a missing file or weights that do not fit stop the run before any data is read
        loaded = True
    return Backbone(
        net=net,
        preprocessing=spec,
        head=head,
        load_pretrained=None if (w is None or loaded) else load,
        resolved={"source": "torchvision", "name": name, "preprocessing": spec},
    )


def _last_linear_name(net: nn.Module) -> str:
    return [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]


def _classifier_child(net: nn.Module) -> str:
    return _last_linear_name(net).split(".")[0]


def _timm(name: str, weights: str | None, weights_file: str | None, download: bool, num_classes: int, input_shape) -> Backbone:
    import timm
    from timm.data import resolve_model_data_config

    if not timm.is_model(name):
        raise _unknown(name, timm.list_models(), "timm timm.list_models()")
    net = timm.create_model(name, pretrained=False, num_classes=num_classes)
    spec = None
    if weights is not None:
        cfg = resolve_model_data_config(net)  # the pretrained_cfg's input size, crop_pct, mean, std
        crop = list(cfg["input_size"][1:])
        spec = {
            "kind": "pretrained_image",
            "input_shape": list(input_shape),
            "resize": int(crop[0] / cfg.get("crop_pct", 1.0)),
            "crop": [int(c) for c in crop],
            "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]],
            "interpolation": cfg.get("interpolation", "bilinear") if cfg.get("interpolation") in ("bilinear", "bicubic") else "bilinear",
        }
    head_name = net.pretrained_cfg.get("classifier", "head")
    head_name = head_name[0] if isinstance(head_name, (list, tuple)) else head_name

    def locate() -> Path:
        if weights_file:
            p = Path(weights_file)
            if not p.is_file():
                raise _missing_file(p, None, "a state dict saved with torch.save or safetensors")
            return p
        hub_id = net.pretrained_cfg.get("hf_hub_id")
        if not hub_id:
            raise WeightsError(f"timm {name} names no Hugging Face weights; set model.init_args.weights_file")
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        for fname in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(hub_id, fname)
            if isinstance(hit, str):
                return Path(hit)
        if download:
            return Path(hf_hub_download(hub_id, "model.safetensors"))
        from huggingface_hub.constants import HF_HUB_CACHE

        return_path = Path(HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
        raise _missing_file(return_path / "snapshots/<revision>/model.safetensors", f"https://huggingface.co/{hub_id}", "the Hugging Face hub cache, HF_HOME")

    def load() -> None:
        p = locate()
        _load_into(net, _read_state_dict(p), p, f"timm {name}", skip_prefix=head_name + ".")

    deferred = None
    if weights is not None:
        if download and not weights_file:
            deferred = load  # may download: when fitting starts
        else:
            load()  # now: a missing file or weights that do not fit stop the run before any data is read
    return Backbone(
        net=net,
        preprocessing=spec,
        head=head_name.split(".")[0],
        load_pretrained=deferred,
        resolved={"source": "timm", "name": name, "preprocessing": spec},
    )


def _zoo(weights_file: str | None, num_classes: int, input_shape, resolved: dict[str, Any] | None) -> Backbone:
    """A ``zoo fit`` checkpoint: its registered network and its fitted input transform, head replaced."""
    import zoo

    from ._base import make_head

    if resolved is None:
        if not weights_file:
            raise WeightsError("model.init_args.weights_file: source 'zoo' needs the path of a zoo checkpoint (zoo fit's .ckpt)")
        path = Path(weights_file)
        if not path.is_file():
            raise WeightsError(f"model.init_args.weights_file: zoo checkpoint {str(path)!r} does not exist; give the .ckpt that zoo fit wrote")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            hp = ckpt["hyper_parameters"]
            sd = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
            model, kwargs, pre = hp["model"], dict(hp.get("model_kwargs") or {}), hp.get("preprocessing")
        except WeightsError:
            raise
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"cannot read zoo checkpoint {str(path)!r} ({type(e).__name__}: {e}); give a checkpoint written by zoo fit") from None
        src_shape = list(pre["input_shape"]) if pre else list(hp.get("input_shape"))
        if list(input_shape) != src_shape:
            raise WeightsError(
                f"zoo checkpoint {str(path)!r} was trained on raw samples of shape {src_shape}, but the data yields "
                f"{list(input_shape)}; use data of the same shape (resize the images) or another checkpoint"
            )
        resolved = {"source": "zoo", "name": model, "model_kwargs": kwargs, "net_input_shape": None, "preprocessing": pre,
                    "src_num_classes": int(hp.get("num_classes", 10))}
    else:
        sd = None
    from .layers import InputTransform

    pre = resolved["preprocessing"]
    net_shape = InputTransform(pre).output_shape if pre else tuple(input_shape)
    net = zoo.create_model(resolved["name"], input_shape=net_shape, num_classes=resolved["src_num_classes"], **resolved["model_kwargs"])
    if sd is not None:
        _load_into(net, sd, Path(weights_file), f"zoo {resolved['name']}")
    if not hasattr(net, "head") or not hasattr(net, "num_features"):
        raise WeightsError(f"zoo model {resolved['name']!r} has no replaceable head (net.head, net.num_features)")
    net.head = make_head(net.num_features, num_classes)
    return Backbone(net=net, preprocessing=pre, head="head", load_pretrained=None, resolved=resolved)


def build_backbone(
    source: str,
    name: str,
    weights: str | None,
    weights_file: str | None,
    num_classes: int,
    input_shape: Sequence[int],
    download: bool = False,
    resolved: dict[str, Any] | None = None,
) -> Backbone:
    """The backbone ``name`` from ``source`` with a new ``num_classes`` head (see the module docstring).

    With ``resolved`` (what a first build returned, saved in a checkpoint) the architecture is rebuilt
    without reading any weights file: the checkpoint's state dict fills it.
    """
    if source not in SOURCES:
        raise WeightsError(f"model.init_args.source: unknown source {source!r}; choose one of {list(SOURCES)}")
    if source == "zoo":
        return _zoo(weights_file, num_classes, input_shape, resolved)
    build = _torchvision if source == "torchvision" else _timm
    if resolved is None:
        return build(name, weights, weights_file, download, num_classes, input_shape)
    # Rebuilt from a checkpoint: the same architecture and head, no weights read. torchvision's
    # pretrained net was built for the weights' classes and its last Linear replaced, which is the
    # same module tree as building it for num_classes directly.
    bb = build(name, None, None, False, num_classes, input_shape)
    bb.preprocessing, bb.resolved, bb.load_pretrained = resolved.get("preprocessing"), resolved, None
    return bb


def layer_groups(net: nn.Module, head: str) -> list[list[nn.Module]]:
    """The network's trainable parts in input-to-output order, the head's group last.

    Groups are the top-level children that hold parameters (torchvision's ResNet: conv1, bn1,
    layer1..4, fc). A network whose body is one container (a zoo ``features`` Sequential) is split
    into that container's children instead, so ``unfreeze_milestones`` has layers to step through.
    """
    children = [(n, m) for n, m in net.named_children() if any(True for _ in m.parameters())]
    body = [(n, m) for n, m in children if n != head]
    if len(body) == 1 and len(list(body[0][1].children())) > 1:
        body = [(f"{body[0][0]}.{n}", m) for n, m in body[0][1].named_children() if any(True for _ in m.parameters())]
    groups = [[m] for _, m in body]
    head_mod = [m for n, m in children if n == head]
    if not head_mod:
        raise WeightsError(f"{type(net).__name__} has no child named {head!r} to use as the head")
    return groups + [head_mod]
