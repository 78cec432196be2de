"""The registry and every registered architecture, looped over (no Lightning needed here)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo

ROOT = Path(__file__).resolve().parents[1]
ALL = zoo.list_models()


def test_registry_lists_and_filters():
    assert {"mlp", "lenet5"} <= set(ALL)
    assert ALL == sorted(ALL)
    assert zoo.list_models("lenet*") == [n for n in ALL if n.startswith("lenet")]
    assert zoo.list_models("no-such-*") == []


def test_unknown_name_suggests_closest():
    with pytest.raises(zoo.UnknownModelError, match=r"unknown model 'lenet'.*Did you mean: lenet5"):
        zoo.create_model("lenet")


def test_duplicate_name_rejected():
    from zoo import _registry

    saved = dict(_registry._REGISTRY)
    try:
        with pytest.raises(ValueError, match="already registered"):

            @zoo.register_model(task="classification", input_shape=(4,), paper="-", name="mlp")
            def mlp_again(**kw):  # pragma: no cover - never called
                raise AssertionError
    finally:
        # Should the check ever let the duplicate through, the tests after this one still see the real `mlp`.
        changed = _registry._REGISTRY != saved
        _registry._REGISTRY.clear()
        _registry._REGISTRY.update(saved)
    assert not changed


def _output_shape(model, width: int) -> tuple[int, ...]:
    """What one sample's output should be: models that output images (generators) declare
    ``output_shape``; every other model outputs ``width`` numbers (logits or embeddings)."""
    return tuple(getattr(model, "output_shape", None) or (width,))


@pytest.mark.parametrize("name", ALL)
def test_model_info_card(name):
    info = zoo.model_info(name)
    model = zoo.create_model(name)
    assert info["num_params"] == sum(p.numel() for p in model.parameters()) > 0
    assert info["paper"] and info["task"]
    assert tuple(info["input_shape"]) == tuple(model.input_shape)
    if info["default_config"]:
        assert (ROOT / info["default_config"]).is_file()


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_parameter_gets_gradient(name):
    torch.manual_seed(0)
    info = zoo.model_info(name)
    model = zoo.create_model(name)
    x = torch.randn(4, *info["input_shape"])
    out = model(x)
    assert out.shape == (4, *info["output_shape"])
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} got an all-zero gradient"


@pytest.mark.parametrize("name", ALL)
def test_num_classes_zero_returns_embeddings(name):
    info = zoo.model_info(name)
    # Models registered with num_classes=0 (autoencoders, RBMs) have no head to drop: their
    # forward_features is the embedding (the codes), which every model must give.
    model = zoo.create_model(name, num_classes=0) if info["num_classes"] else zoo.create_model(name)
    x = torch.randn(2, *info["input_shape"])
    if info["output"] == "image":  # a generator maps codes to images: it has no embedding of its input
        assert model(x).shape == (2, *info["output_shape"])
        return
    assert model.forward_features(x).shape == (2, model.num_features)
    if info["output"] == "logits":
        assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ALL)
def test_wrong_input_shape_names_expected_and_received(name):
    info = zoo.model_info(name)
    model = zoo.create_model(name)
    bad = (3, *[s + 3 for s in info["input_shape"]])
    with pytest.raises(ValueError) as e:
        model(torch.randn(*bad))
    msg = str(e.value)
    assert "expects input of shape (N, " + ", ".join(map(str, info["input_shape"])) + ")" in msg
    assert str(tuple(bad)) in msg


def test_architectures_import_without_lightning():
    """zoo's models are plain nn.Modules: importing and running them never needs Lightning."""
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {'lightning', 'pytorch_lightning', 'lightning_fabric', 'torchmetrics'}:
                    raise ImportError('blocked for this test: ' + name)
        sys.meta_path.insert(0, Block())
        import torch, zoo
        for n in zoo.list_models():
            info = zoo.model_info(n)
            zoo.create_model(n)(torch.zeros(2, *info['input_shape']))
        assert not any(m.split('.')[0] in {'lightning', 'torchmetrics'} for m in sys.modules)
        print('ok', len(zoo.list_models()))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        zoo.create_model("mlp", hidden=[64, -3])
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        zoo.create_model("mlp", act="swishy")
    with pytest.raises(ValueError, match="too small for LeNet5"):
        zoo.create_model("lenet5", input_shape=(1, 8, 8))
