"""Plain-loop emulation of configs/dbn_digits.yaml (DBNTask's greedy pretraining, then fine-tuning with
a cosine schedule, the epoch of best val/loss kept, early stopping on it) to choose the recipe on
validation: mean validation accuracy over seeds 0, 1, 2 per recipe. The test rows are never scored.

    OMP_NUM_THREADS=1 uv run python benchmarks/dbn_recipe_sweep.py '{"pre_epochs": 0}' '{}'

Keys: pre_epochs (0: random initialisation), pre_lr, pre_bs, pre_mom, k, pcd, hidden, epochs, lr, bs,
patience, wd, opt ("adam" or "sgd"), mom (defaults: the config's recipe).
"""

import sys, time, json
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import numpy as np, torch, torch.nn.functional as F
from representation import split_arrays
from zoo.rbm import BernoulliRBM, DeepBeliefNet
torch.set_num_threads(1)
data = split_arrays()
X = {k: torch.from_numpy(v[0].reshape(len(v[0]), -1)).float() for k, v in data.items()}
Y = {k: torch.from_numpy(v[1]).long() for k, v in data.items()}

def run(seed=0, pre_epochs=10, pre_lr=0.05, pre_bs=32, k=1, pcd=True, pre_mom=0.0, hidden=(256, 128), epochs=40, lr=0.01, bs=32, patience=10, wd=0.0, opt="adam", mom=0.9):
    torch.manual_seed(seed)
    net = DeepBeliefNet((64,), 10, hidden=list(hidden))
    g = torch.Generator().manual_seed(seed)
    x = X["train"]
    for layer in range(len(net.layers) if pre_epochs else 0):
        nv, nh = net.rbm_shape(layer)
        rbm = BernoulliRBM((nv,), n_hidden=nh, n_chains=pre_bs)
        opt = torch.optim.SGD(rbm.parameters(), lr=pre_lr, momentum=pre_mom)
        for _ in range(pre_epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), pre_bs):
                with torch.no_grad():
                    v = net.up(x[perm[i:i+pre_bs]], layer)
                loss, _ = rbm.cd_loss(v, k, pcd)
                opt.zero_grad(); loss.backward(); opt.step()
        net.load_rbm(layer, rbm)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd) if opt == "adam" else torch.optim.SGD(net.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    best, best_acc, bad = 1e9, 0, 0
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            idx = perm[i:i+bs]
            loss = F.cross_entropy(net(x[idx]), Y["train"][idx])
            opt.zero_grad(); loss.backward(); opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            out = net(X["val"]); vl = float(F.cross_entropy(out, Y["val"])); va = float((out.argmax(1) == Y["val"]).float().mean())
        if vl < best:
            best, best_acc, bad = vl, va, 0
        else:
            bad += 1
            if bad >= patience: break
    return best_acc, best

for cfg in [json.loads(a) for a in sys.argv[1:]]:
    t = time.time(); r = [run(seed=s, **cfg) for s in (0, 1, 2)]
    print(json.dumps({**cfg, "val_acc": round(float(np.mean([a for a, _ in r])), 4), "per": [round(a, 4) for a, _ in r], "val_loss": round(float(np.mean([l for _, l in r])), 4), "s": round(time.time() - t)}), flush=True)
