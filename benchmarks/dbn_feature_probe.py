"""How readable are the DBN's pretrained features? Pretrains the RBMs as benchmarks/dbn_recipe_sweep.py
does (the well-trained recipe by default, and configs/dbn_digits.yaml's), then fits logistic regression
(C=100) on each layer's hidden probabilities of the training rows and scores the validation rows; also
prints the features' mean standard deviation across rows. The test rows are never used.

    OMP_NUM_THREADS=2 uv run python benchmarks/dbn_feature_probe.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from representation import split_arrays  # noqa: E402
from zoo.rbm import BernoulliRBM, DeepBeliefNet  # noqa: E402

data = split_arrays()
X = {k: torch.from_numpy(v[0].reshape(len(v[0]), -1)).float() for k, v in data.items()}
Y = {k: v[1] for k, v in data.items()}


def pretrain(seed=0, epochs=40, lr=0.1, bs=32, k=1, pcd=False, mom=0.5, hidden=(256, 128)) -> DeepBeliefNet:
    """Greedy layer-wise CD/PCD, the same loop as dbn_recipe_sweep.run's pretraining."""
    torch.manual_seed(seed)
    net = DeepBeliefNet((64,), 10, hidden=list(hidden))
    g = torch.Generator().manual_seed(seed)
    x = X["train"]
    for layer in range(len(net.layers)):
        nv, nh = net.rbm_shape(layer)
        rbm = BernoulliRBM((nv,), n_hidden=nh, n_chains=bs)
        opt = torch.optim.SGD(rbm.parameters(), lr=lr, momentum=mom)
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), bs):
                with torch.no_grad():
                    v = net.up(x[perm[i:i + bs]], layer)
                loss, _ = rbm.cd_loss(v, k, pcd)
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.load_rbm(layer, rbm)
    return net


for name, cfg in (("well-trained RBMs (CD-1, lr 0.1, momentum 0.5, 40 epochs)", {}),
                  ("configs/dbn_digits.yaml (PCD, lr 0.05, 10 epochs)", dict(epochs=10, lr=0.05, pcd=True, mom=0.0))):
    net = pretrain(**cfg)
    with torch.no_grad():
        for layer in (1, 2):
            f = {k: net.up(X[k], layer).numpy() for k in ("train", "val")}
            acc = LogisticRegression(C=100, max_iter=3000).fit(f["train"], Y["train"]).score(f["val"], Y["val"])
            print(f"{name}: layer {layer}: logistic regression val {acc:.4f}, feature std across rows {f['train'].std(0).mean():.4f}", flush=True)
