"""Plain-loop sweep of the RBM training recipe behind configs/rbm_digits.yaml: the zoo's BernoulliRBM
trained by SGD on ``cd_loss`` (as EnergyTask does) on the training rows of DigitsDataModule(seed=0)
scaled to [0, 1], each recipe over seeds 0, 1, 2; printed: mean validation accuracy of logistic
regression on the hidden probabilities (C chosen on validation from the benchmark's grid) and the
validation pseudo-likelihood. The test rows are never scored here.

    OMP_NUM_THREADS=1 uv run python benchmarks/rbm_recipe_sweep.py --sk           # BernoulliRBM on validation
    OMP_NUM_THREADS=1 uv run python benchmarks/rbm_recipe_sweep.py '{}' '{"mom": 0.5, "lr": 0.03, "epochs": 80}'

Keys: lr, epochs, bs, mom, wd, k, pcd, chains (defaults: the previous config, lr 0.06, 40 epochs).
"""

import sys, time, itertools, json
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import numpy as np, torch
from representation import split_arrays, LOGREG_CS
from sklearn.linear_model import LogisticRegression
from zoo.rbm import BernoulliRBM
torch.set_num_threads(1)
data = split_arrays()
flat = {k: torch.from_numpy(v[0].reshape(len(v[0]), -1)).float() for k, v in data.items()}
y = {k: v[1] for k, v in data.items()}
print({k: len(v) for k, v in flat.items()}, flush=True)

def val_acc(f):
    fits = {c: LogisticRegression(C=c, max_iter=5000).fit(f["train"], y["train"]) for c in LOGREG_CS}
    accs = {c: fits[c].score(f["val"], y["val"]) for c in LOGREG_CS}
    best = max(LOGREG_CS, key=accs.get)
    return accs[best], best

def train(lr=0.06, epochs=40, bs=10, mom=0.0, wd=0.0, k=1, pcd=True, seed=0, chains=None):
    torch.manual_seed(seed)
    rbm = BernoulliRBM((64,), n_hidden=100, n_chains=chains or bs)
    opt = torch.optim.SGD(rbm.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    x = flat["train"]; g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            v = x[perm[i:i+bs]]
            loss, _ = rbm.cd_loss(v, k, pcd)
            opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        f = {s: rbm.encode(flat[s]).numpy() for s in flat}
        pl = float(rbm.pseudo_likelihood(flat["val"], torch.Generator().manual_seed(1)).mean())
    return f, pl

grid = [json.loads(a) for a in sys.argv[1:] if a != "--sk"]
if "--sk" in sys.argv[1:2]:
    from sklearn.neural_network import BernoulliRBM as SK
    grid = grid[1:] if False else []
    sk = SK(n_components=100, learning_rate=0.06, n_iter=20, random_state=0).fit(flat["train"].numpy())
    print("sklearn val", val_acc({s: sk.transform(flat[s].numpy()) for s in flat}), float(sk.score_samples(flat["val"].numpy()).mean()), flush=True)
    sys.exit()
SEEDS = (0, 1, 2)
for cfg in grid:
    t = time.time(); r = []
    for sd in SEEDS:
        f, pl = train(seed=sd, **cfg); acc, c = val_acc(f); r.append((acc, c, pl))
    print(json.dumps({**cfg, "val_acc": round(float(np.mean([a for a, _, _ in r])), 4), "per": [a for a, _, _ in r], "C": [c for _, c, _ in r], "val_pl": round(float(np.mean([p for _, _, p in r])), 2), "s": round(time.time() - t)}), flush=True)
