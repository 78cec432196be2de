"""Restricted Boltzmann machines and deep belief networks.

* Bernoulli RBM: Smolensky (1986) "harmonium"; trained by contrastive divergence, Hinton (2002),
  "Training Products of Experts by Minimizing Contrastive Divergence", Neural Computation 14(8),
  and by persistent contrastive divergence (stochastic maximum likelihood), Tieleman (2008),
  "Training Restricted Boltzmann Machines using Approximations to the Likelihood Gradient", ICML.
* DBN: Hinton, Osindero & Teh (2006), "A Fast Learning Algorithm for Deep Belief Nets", Neural
  Computation 18(7): RBMs trained greedily layer by layer, each on the hidden probabilities of the
  layer below, then unrolled into a sigmoid network and fine-tuned (here: with labels, as in
  Hinton & Salakhutdinov, 2006).

The RBM is written by hand because neither torch nor any maintained torch library ships one;
scikit-learn's ``BernoulliRBM`` (numpy, CPU) is the reference it is measured against, and the
update below is the same as its ``_fit`` (see ``cd_loss``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import ZooModel, make_head
from ._registry import register_model


class BernoulliRBM(ZooModel):
    """Binary visible and hidden units, energy E(v, h) = -v.b - h.c - h W v.

    Visible inputs are pixel intensities in [0, 1] (treated as probabilities, as scikit-learn does).
    The persistent chain of PCD is the buffer ``chain`` (``n_chains`` hidden states): it is saved in
    the state dict (so it survives checkpoint and resume) and moves with ``.to(device)``.

    Args:
        input_shape: shape of one sample (flattened to ``n_visible``).
        n_hidden: hidden units.
        n_chains: persistent chains (PCD's fantasy particles); scikit-learn uses its batch size.

    ``forward(x)`` is one mean-field up-down pass (the reconstruction, ``(N, *input_shape)``);
    ``encode(x)`` the hidden probabilities ``(N, n_hidden)`` (the features).
    """

    def __init__(self, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 0, n_hidden: int = 100, n_chains: int = 64) -> None:
        super().__init__(input_shape, 0)
        if num_classes:
            raise ValueError(f"BernoulliRBM has no classifier head; got num_classes={num_classes} (leave it 0)")
        if n_hidden < 1 or n_chains < 1:
            raise ValueError(f"BernoulliRBM: n_hidden and n_chains must be >= 1, got {n_hidden} and {n_chains}")
        n_visible = math.prod(self.input_shape)
        self.n_visible, self.n_hidden = n_visible, int(n_hidden)
        self.num_features = self.n_hidden
        # N(0, 0.01) weights and zero biases, as scikit-learn and Hinton's practical guide (2010, sec. 8).
        self.weight = nn.Parameter(torch.randn(n_hidden, n_visible) * 0.01)  # (H, V)
        self.vbias = nn.Parameter(torch.zeros(n_visible))  # (V,)
        self.hbias = nn.Parameter(torch.zeros(n_hidden))  # (H,)
        self.register_buffer("chain", torch.zeros(int(n_chains), n_hidden))  # (chains, H), PCD state

    # ------------------------------------------------------------------ conditionals and energy

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)  # (N, V)

    def mean_hiddens(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.linear(v, self.weight, self.hbias))  # (N, H)

    def mean_visibles(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.linear(h, self.weight.t(), self.vbias))  # (N, V)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -v.b - sum_j softplus(c_j + W_j v), per row: ``(N,)``."""
        return -(v @ self.vbias) - F.softplus(F.linear(v, self.weight, self.hbias)).sum(-1)

    @torch.no_grad()
    def gibbs_negatives(self, v: torch.Tensor, k: int = 1, persistent: bool = False) -> torch.Tensor:
        """Negative particles after ``k`` Gibbs steps: from the data (CD-k) or from the persistent
        chain (PCD, which then advances). Returns binary visible samples ``(M, V)``."""
        h = self.chain if persistent else torch.bernoulli(self.mean_hiddens(v))
        for _ in range(k):
            v_neg = torch.bernoulli(self.mean_visibles(h))
            h_prob = self.mean_hiddens(v_neg)
            h = torch.bernoulli(h_prob)
        if persistent:
            self.chain.copy_(h)
        return v_neg

    def cd_loss(self, v: torch.Tensor, k: int = 1, persistent: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Surrogate whose gradient is minus the CD-k / PCD estimate of the log-likelihood gradient:
        mean F(data) - mean F(negatives), negatives held constant. Its gradient with respect to W is
        -(E_data[h v^T] - E_neg[h v^T]) with h the hidden probabilities, i.e. scikit-learn's update
        with the sign turned for a minimiser (plain SGD at its learning rate takes its exact step).
        Returns ``(surrogate, F(data) per row)``."""
        v = self._flat(v)
        v_neg = self.gibbs_negatives(v, k, persistent)
        fe = self.free_energy(v)  # (N,)
        return fe.mean() - self.free_energy(v_neg).mean(), fe

    def pseudo_likelihood(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Log pseudo-likelihood per row, estimated as scikit-learn's ``score_samples``: one random
        pixel i of each row flipped (v_i -> 1 - v_i), then V * log sigmoid(F(v_flipped) - F(v))."""
        v = self._flat(v)
        idx = torch.randint(0, v.shape[1], (len(v),), generator=generator, device="cpu").to(v.device)  # (N,)
        rows = torch.arange(len(v), device=v.device)
        flipped = v.clone()
        flipped[rows, idx] = 1 - flipped[rows, idx]
        return v.shape[1] * F.logsigmoid(self.free_energy(flipped) - self.free_energy(v))  # (N,)

    # ------------------------------------------------------------------------ zoo surface

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.mean_hiddens(self._flat(x))  # (N, H)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean_visibles(self.encode(x)).unflatten(1, tuple(self.input_shape))

    @torch.no_grad()
    def chain_visibles(self) -> torch.Tensor:
        """The persistent chain's current visible probabilities, ``(chains, *input_shape)``."""
        return self.mean_visibles(self.chain).view(len(self.chain), *self.input_shape)


class DeepBeliefNet(ZooModel):
    """Sigmoid MLP whose layers are the stacked RBMs of a DBN, with a softmax classifier on top.

    Layer l's weight and bias are RBM l's W and hidden bias (``load_rbm``); its visible bias is kept
    as a buffer (the generative down-pass's, not used by the classifier, so not fine-tuned).

    Args:
        input_shape: shape of one sample (flattened).
        num_classes: classes of the fine-tuned head; 0 returns the top layer's probabilities.
        hidden: widths of the hidden layers (the RBMs' hidden sizes).
        sizes: alternatively the full chain ``[visible, h1, h2, ...]``; ``sizes[0]`` must equal the
            flattened input size, and each RBM's hidden layer is the next one's visible layer.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        hidden: Sequence[int] = (256, 128),
        sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__(input_shape, num_classes)
        n_in = math.prod(self.input_shape)
        if sizes is not None:
            sizes = [int(s) for s in sizes]
            if len(sizes) < 2 or sizes[0] != n_in:
                raise ValueError(
                    f"DBN sizes {sizes} do not chain with the input: it has {n_in} features, so sizes must start "
                    f"with {n_in} and name at least one hidden layer (e.g. [{n_in}, 256, 128])"
                )
            hidden = sizes[1:]
        hidden = [int(h) for h in hidden]
        if not hidden or any(h <= 0 for h in hidden):
            raise ValueError(f"DBN hidden sizes must be positive and at least one, got {hidden}")
        self.sizes = [n_in, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        for i, a in enumerate(self.sizes[:-1]):
            self.register_buffer(f"vbias{i}", torch.zeros(a))
        self.num_features = hidden[-1]
        self.head = make_head(hidden[-1], num_classes)

    def rbm_shape(self, layer: int) -> tuple[int, int]:
        """``(n_visible, n_hidden)`` of RBM ``layer``."""
        return self.sizes[layer], self.sizes[layer + 1]

    def up(self, x: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """Hidden probabilities after the first ``layers`` layers (all by default): ``(N, sizes[layers])``."""
        h = x.flatten(1)
        for layer in self.layers[: len(self.layers) if layers is None else layers]:
            h = torch.sigmoid(layer(h))
        return h

    @torch.no_grad()
    def load_rbm(self, layer: int, rbm: BernoulliRBM) -> None:
        """Copy RBM ``layer``'s parameters into the network (the unrolling of Hinton et al., 2006)."""
        lin = self.layers[layer]
        if tuple(rbm.weight.shape) != tuple(lin.weight.shape):
            raise ValueError(f"RBM of shape {tuple(rbm.weight.shape)} does not fit DBN layer {layer} of shape {tuple(lin.weight.shape)}")
        lin.weight.copy_(rbm.weight)
        lin.bias.copy_(rbm.hbias)
        getattr(self, f"vbias{layer}").copy_(rbm.vbias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)  # (N, sizes[-1])


# ------------------------------------------------------------------------------------- variants

_PAPER_RBM = "Hinton (2002), Training Products of Experts by Minimizing Contrastive Divergence; Tieleman (2008), ICML (PCD)"
_PAPER_DBN = "Hinton, Osindero & Teh (2006), A Fast Learning Algorithm for Deep Belief Nets, Neural Computation 18(7)"


@register_model(task="energy", output="reconstruction", input_shape=(1, 8, 8), num_classes=0, paper=_PAPER_RBM,
                default_config="configs/rbm_digits.yaml")
def rbm(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 0, **kwargs) -> BernoulliRBM:
    """Bernoulli RBM, 100 hidden units (scikit-learn's BernoulliRBM example size)."""
    return BernoulliRBM(input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=(1, 8, 8), paper=_PAPER_DBN, default_config="configs/dbn_digits.yaml")
def dbn(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **kwargs) -> DeepBeliefNet:
    """DBN of two RBMs (256, 128 hidden), unrolled into a sigmoid classifier."""
    return DeepBeliefNet(input_shape, num_classes, **kwargs)
