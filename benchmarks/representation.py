"""Issue 14's bars: autoencoders, denoising autoencoder, VAE, RBM and DBN against scikit-learn on the
same split (``DigitsDataModule(seed=0)``'s train/val/test, pixels scaled to [0, 1] by the training
rows' min and max, i.e. divided by 16). Every zoo row is a real ``zoo fit --config`` process (the
best checkpoint by val/loss is tested); every baseline is computed in the same run.

    uv run python benchmarks/representation.py                  # every row, prints the table
    uv run python benchmarks/representation.py --write-readme   # and writes it into README.md
    uv run python benchmarks/representation.py --only rbm vae    # some rows
    uv run python benchmarks/representation.py --only dbn --write-readme   # re-measure rows, keep the others

Rows: ``ae16``/``ae8`` (configs/autoencoder_digits.yaml at latent 16 / 8) vs PCA(16)/PCA(8) test
MSE per pixel; ``dae`` (configs/denoising_autoencoder_digits.yaml, sigma 0.25) vs the noisy input
and PCA's best denoising (the best number of components on these very test rows, a generous
baseline), on the same noisy test rows; ``vae`` vs a factorised per-pixel Bernoulli fitted on the
training rows (nats per test image); ``rbm`` vs scikit-learn's ``BernoulliRBM(100, learning_rate
0.06, n_iter 20)``: mean test pseudo-likelihood and logistic-regression accuracy on the features
(the same ``LogisticRegression`` for both); ``dbn``: the pretrained DBN vs the same network trained
from random initialisation (``pretrain_epochs: 0``, the same fine-tuning epochs), seeds 0, 1, 2
(training seed; the split stays seed 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- representation-table:begin -->", "<!-- representation-table:end -->"
ROWS = ("ae16", "ae8", "dae", "vae", "rbm", "dbn")
LOGREG_CS = (1.0, 10.0, 100.0, 1000.0, 6000.0)  # C chosen on the validation rows, the same way for both feature sets


def fit(config: str, extra: list[str], workdir: Path) -> dict:
    """``zoo fit --config configs/<config>.yaml <extra>`` in ``workdir``; returns test_metrics.json + wall."""
    cmd = [sys.executable, "-c", "import cli; cli.main()", "fit", "--config", str(ROOT / "configs" / f"{config}.yaml"),
           "--trainer.default_root_dir", str(workdir), "--trainer.enable_progress_bar", "false", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{config} {extra} failed:\n{r.stderr[-3000:]}")
    summary = json.loads(next(workdir.rglob("test_metrics.json")).read_text())
    return {"wall": time.perf_counter() - t0, **summary}


def split_arrays():
    """Train/val/test rows of the shared split in [0, 1] (as the unit-scaled models see them), labels."""
    from datamodules import DigitsDataModule

    dm = DigitsDataModule(seed=0, scaling="unit")
    dm.setup("fit")
    lo, rng = float(dm.scaler.mean_[0]), float(dm.scaler.scale_[0])
    out = {}
    for k, idx in dm.split_indices.items():
        out[k] = ((dm.raw_x[idx].astype(np.float64) - lo) / rng, dm.raw_y[idx])  # (n, 1, 8, 8), (n,)
    return out


def noisy_test_rows(x_test: np.ndarray, sigma: float, batch_size: int) -> np.ndarray:
    """The noisy test rows the denoising task scores: its fixed evaluation noise, batch by batch."""
    import torch

    from zoo.tasks.representation import _eval_generator

    parts = []
    for b, i in enumerate(range(0, len(x_test), batch_size)):
        chunk = torch.from_numpy(x_test[i : i + batch_size]).float()
        parts.append((chunk + sigma * torch.randn(chunk.shape, generator=_eval_generator(b))).double().numpy())
    return np.concatenate(parts)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a - b) ** 2).mean())


def pca_recon(x_train, x, k):
    from sklearn.decomposition import PCA

    p = PCA(k, random_state=0).fit(x_train.reshape(len(x_train), -1))
    return p.inverse_transform(p.transform(x.reshape(len(x), -1))).reshape(x.shape)


def logreg_acc(f: dict, y: dict) -> tuple[float, float]:
    """Test accuracy of logistic regression on features ``f[split]``, its C chosen by validation
    accuracy (the test rows are only scored, once); returns ``(accuracy, C)``."""
    from sklearn.linear_model import LogisticRegression

    fits = {c: LogisticRegression(C=c, max_iter=5000).fit(f["train"], y["train"]) for c in LOGREG_CS}
    best = max(LOGREG_CS, key=lambda c: fits[c].score(f["val"], y["val"]))
    return float(fits[best].score(f["test"], y["test"])), best


def rbm_features(ckpt: str, data) -> dict:
    """Hidden probabilities of the trained zoo RBM (raw 0..16 rows in, through its own transform)."""
    import torch

    from zoo.tasks import EnergyTask

    task = EnergyTask.load_from_checkpoint(ckpt, map_location="cpu").eval()
    with torch.no_grad():
        return {k: task.net.encode(task.preprocess(torch.from_numpy(data[k][0] * 16.0).float())).numpy() for k in data}


def row(name, metric, value, baseline, passed, wall, note=""):
    r = {"row": name, "metric": metric, "value": value, "baseline": baseline, "bar": "pass" if passed else "FAIL", "wall": wall, "note": note}
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=ROWS, default=list(ROWS))
    p.add_argument("--write-readme", action="store_true")
    p.add_argument("--rbm-seeds", type=int, default=3,
                   help="the RBM features row also reports both arms' mean over training seeds 0..N-1 (the bar stays seed 0's)")
    args = p.parse_args()
    data = split_arrays()
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def run(tag: str, cfg: str, extra=()) -> dict:
            (tmp / tag).mkdir()
            return fit(cfg, list(extra), (tmp / tag).resolve())

        if "ae16" in args.only:
            res = run("ae16", "autoencoder_digits")
            base = mse(pca_recon(xtr, xte, 16), xte)
            v = res["metrics"]["test/mse"]
            rows.append(row("autoencoder, latent 16", "test/mse", v, f"PCA(16): {base:.4f}", v <= base, res["wall"]))
        if "ae8" in args.only:
            res = run("ae8", "autoencoder_digits", ["--model.init_args.model_kwargs", "{latent_dim: 8, hidden: [128]}"])
            base = mse(pca_recon(xtr, xte, 8), xte)
            v = res["metrics"]["test/mse"]
            rows.append(row("autoencoder, latent 8", "test/mse", v, f"PCA(8): {base:.4f}", v <= base, res["wall"]))
        if "dae" in args.only:
            res = run("dae", "denoising_autoencoder_digits")
            noisy = noisy_test_rows(xte, 0.25, batch_size=64)  # the config's batch size
            in_mse = mse(noisy, xte)
            pca = {k: mse(pca_recon(xtr, noisy, k), xte) for k in (4, 8, 12, 16, 20, 24, 32, 48)}
            k_best = min(pca, key=pca.get)
            v = res["metrics"]["test/mse"]
            assert abs(res["metrics"]["test/noisy_mse"] - in_mse) < 1e-4, "the task's noisy test rows differ from the benchmark's"
            rows.append(row("denoising autoencoder, sigma 0.25", "test/mse (vs clean)", v,
                            f"noisy input: {in_mse:.4f}; PCA({k_best}) best: {pca[k_best]:.4f}", v < in_mse and v < pca[k_best], res["wall"]))
        if "vae" in args.only:
            res = run("vae", "vae_digits")
            pm = np.clip(xtr.reshape(len(xtr), -1).mean(0), 1e-3, 1 - 1e-3)  # per-pixel Bernoulli, training rows
            t = xte.reshape(len(xte), -1)
            base = float(-(t * np.log(pm) + (1 - t) * np.log(1 - pm)).sum(1).mean())
            v = res["metrics"]["test/nelbo"]
            rows.append(row("VAE (Bernoulli)", "test/nelbo (nats/image)", v, f"factorised Bernoulli: {base:.2f}", v < base, res["wall"],
                            f"recon {res['metrics']['test/recon']:.2f} + KL {res['metrics']['test/kl']:.2f}"))
        if "rbm" in args.only:
            from sklearn.neural_network import BernoulliRBM

            res = run("rbm", "rbm_digits")
            flat = lambda a: a.reshape(len(a), -1).astype(np.float32)  # noqa: E731  (float32 as the zoo trains)
            sk = BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=20, random_state=0).fit(flat(xtr))
            sk_pl = float(sk.score_samples(flat(xte)).mean())
            labels = {k: data[k][1] for k in data}
            sk_acc, sk_c = logreg_acc({k: sk.transform(flat(data[k][0])) for k in data}, labels)
            v = res["metrics"]["test/pseudo_likelihood"]
            rows.append(row("RBM, 100 hidden, PCD, 80 epochs", "test/pseudo_likelihood", v, f"BernoulliRBM (20 iterations): {sk_pl:.2f}",
                            v >= sk_pl, res["wall"]))
            acc, c = logreg_acc(rbm_features(res["best_checkpoint"], data), labels)
            note = f"C={c:g}; C chosen for each arm alike on the validation rows from {', '.join(f'{x:g}' for x in LOGREG_CS)}"
            if args.rbm_seeds > 1:
                # One test image is 0.0028 here: the seeds' spread says whether a gap is more than that.
                zoo_accs, sk_accs = [acc], [sk_acc]
                for seed in range(1, args.rbm_seeds):
                    r = run(f"rbm{seed}", "rbm_digits", ["--seed_everything", str(seed)])
                    zoo_accs.append(logreg_acc(rbm_features(r["best_checkpoint"], data), labels)[0])
                    skm = BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=20, random_state=seed).fit(flat(xtr))
                    sk_accs.append(logreg_acc({k: skm.transform(flat(data[k][0])) for k in data}, labels)[0])
                seeds = f"seeds 0-{args.rbm_seeds - 1}"
                note += (f"; mean over {seeds} (training seed; BernoulliRBM random_state): {statistics.mean(zoo_accs):.4f} "
                         f"({', '.join(f'{a:.4f}' for a in zoo_accs)}) vs {statistics.mean(sk_accs):.4f} ({', '.join(f'{a:.4f}' for a in sk_accs)})")
            rows.append(row("RBM features + logistic regression", "test accuracy", acc, f"BernoulliRBM features: {sk_acc:.4f} (C={sk_c:g})",
                            acc >= sk_acc, res["wall"], note))
        if "dbn" in args.only:
            accs: dict[str, list[float]] = {"dbn": [], "mlp": []}
            walls = []
            for seed in (0, 1, 2):
                for kind, extra in (("dbn", []), ("mlp", ["--model.init_args.pretrain_epochs", "0"])):
                    res = run(f"dbn{seed}{kind}", "dbn_digits", ["--seed_everything", str(seed), *extra])
                    accs[kind].append(res["metrics"]["test/acc"])
                    walls.append(res["wall"])
            d, m = accs["dbn"], accs["mlp"]
            rows.append(row("DBN pretrained + fine-tuned (seeds 0, 1, 2)", "test/acc", statistics.mean(d),
                            f"same net from random init: {statistics.mean(m):.4f} ({', '.join(f'{a:.4f}' for a in m)})",
                            statistics.mean(d) >= statistics.mean(m), sum(walls), f"per seed {', '.join(f'{a:.4f}' for a in d)}"))
    from run_configs import machine, write_readme_block

    lines = ["| model (config) | metric | zoo | scikit-learn / baseline, same split and run | bar | wall s | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['metric']} | {r['value']:.4f} | {r['baseline']} | {r['bar']} | {r['wall']:.0f} | {r['note']} |")
    cmd = "uv run python benchmarks/representation.py " + " ".join(sys.argv[1:])
    table = "\n".join(lines) + (
        f"\n\nMeasured on {machine()}, {time.strftime('%Y-%m-%d')}, by `{cmd.strip()}` (wall: whole `zoo fit` processes, "
        "on a machine shared with other jobs, so only indicative).\n"
    )
    print("\n" + table)
    if args.write_readme:
        if set(args.only) != set(ROWS):
            table = merge((ROOT / "README.md").read_text(), rows, cmd.strip(), machine())
        write_readme_block(BEGIN, END, table)


def merge(text: str, rows: list[dict], cmd: str, where: str) -> str:
    """The README table with the rows measured now replacing those of the same name (marked with a
    dagger), the others kept as they were measured, and one footer line per measurement."""
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip().splitlines()
    head, old, footer = block[:2], [ln for ln in block[2:] if ln.startswith("| ")], [ln for ln in block[2:] if ln and not ln.startswith("| ")]
    new = {r["row"]: f"| {r['row']} | {r['metric']} | {r['value']:.4f} | {r['baseline']} | {r['bar']} | {r['wall']:.0f} | {r['note']} † |" for r in rows}
    names = [ln.split(" | ")[0][2:] for ln in old]
    lines = [new.pop(n, ln) for n, ln in zip(names, old)] + list(new.values())
    footer = [f for f in footer if not f.startswith("† ")] + [
        f"† re-measured on {where}, {time.strftime('%Y-%m-%d')}, by `{cmd}` (the other rows as measured above)."]
    return "\n".join(head + lines) + "\n\n" + "\n\n".join(footer) + "\n"


if __name__ == "__main__":
    main()
