"""Metric learning (issue 16): mining picks the hardest triplets, P x K batches, class-disjoint splits,
seeded episodes, the threshold comes from validation, collapse is reported, enrol/identify round trip."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import cli
from datamodules.metric import MetricDigitsDataModule, PKBatchSampler, episode_accuracy, episode_indices
from datamodules.pairs import sample_pairs
from zoo import gallery
from zoo.tasks.metric import (
    MetricLearningTask,
    batch_hard_triplets,
    equal_error,
    pairwise_distances,
    semi_hard_triplets,
    supcon_loss,
    triplet_loss,
)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ mining


def _batch(seed=0, b=12, d=5):
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.arange(b) % 3  # three classes, four rows each
    return emb, y, pairwise_distances(emb)


def test_pairwise_distances_match_cdist():
    emb, _, dist = _batch()
    off = ~torch.eye(len(emb), dtype=torch.bool)
    assert torch.allclose(dist[off], torch.cdist(emb, emb)[off], atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_picks_the_farthest_positive_and_nearest_negative(seed):
    emb, y, dist = _batch(seed)
    a, p, n = batch_hard_triplets(dist, y)
    assert a.tolist() == list(range(len(y)))  # every anchor has positives and negatives here
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):
        pos = [m for m in range(len(y)) if y[m] == y[i] and m != i]
        neg = [m for m in range(len(y)) if y[m] != y[i]]
        assert j == max(pos, key=lambda m: dist[i, m]) and k == min(neg, key=lambda m: dist[i, m])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semi_hard_picks_the_nearest_negative_beyond_the_positive(seed):
    emb, y, dist = _batch(seed)
    margin = 0.3
    a, p, n = semi_hard_triplets(dist, y, margin)
    pairs = [(i, j) for i in range(len(y)) for j in range(len(y)) if i != j and y[i] == y[j]]
    assert sorted(zip(a.tolist(), p.tolist())) == sorted(pairs)
    banded = 0
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):
        neg = [m for m in range(len(y)) if y[m] != y[i]]
        band = [m for m in neg if dist[i, j] < dist[i, m] < dist[i, j] + margin]
        expected = min(band, key=lambda m: dist[i, m]) if band else max(neg, key=lambda m: dist[i, m])
        assert k == expected
        banded += bool(band)
    assert 0 < banded < len(pairs)  # both branches were exercised


def test_triplet_loss_and_active_fraction():
    dist = torch.tensor([[0.0, 0.1, 1.0, 0.05], [0.1, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], [0.05, 1.0, 1.0, 0.0]])
    a, p, n = torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([3, 2])
    loss, active = triplet_loss(dist, a, p, n, margin=0.2)
    # anchor 0: 0.1 - 0.05 + 0.2 = 0.25; anchor 1: 0.1 - 1.0 + 0.2 < 0 -> 0
    assert loss.item() == pytest.approx(0.125) and active.item() == pytest.approx(0.5)


def test_supcon_loss_matches_the_per_anchor_formula():
    emb, y, _ = _batch(seed=3)
    t = 0.1
    loss, active = supcon_loss(emb, y, t)
    sim = emb @ emb.T
    per, violated, pairs = [], 0, 0
    for i in range(len(y)):  # Khosla et al. (2020), eq. 2, written out one anchor at a time
        others = [j for j in range(len(y)) if j != i]
        denom = torch.logsumexp(sim[i, others] / t, 0)
        positives = [j for j in others if y[j] == y[i]]
        per.append(-sum(sim[i, j] / t - denom for j in positives) / len(positives))
        hardest = max(sim[i, j] for j in others if y[j] != y[i])
        violated += sum(int(sim[i, j] < hardest) for j in positives)
        pairs += len(positives)
    assert float(loss) == pytest.approx(float(torch.stack(per).mean()), rel=1e-5)
    assert float(active) == pytest.approx(violated / pairs)
    # Well separated classes: no ranking violated and a loss near its floor log(#positives)... vs a shuffle.
    tight = torch.nn.functional.normalize(torch.eye(3)[y] + 0.01 * emb[:, :3], dim=1)
    low, none = supcon_loss(tight, y, t)
    assert float(none) == 0 and float(low) < float(supcon_loss(tight, y[torch.randperm(len(y))], t)[0])


def test_equal_error_threshold_separates_at_the_equal_error_point():
    d = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.4, 0.8, 1.0, 1.2])
    same = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    auc, eer, t = equal_error(d, same)
    assert auc == pytest.approx(14 / 16) and eer == pytest.approx(0.25)
    assert 0.4 < t < 0.8  # midway between the last accepted distance and the next one
    accepted = d <= t
    far = float((accepted & (same == 0)).sum() / 4)
    frr = float((~accepted & (same == 1)).sum() / 4)
    assert far == frr == pytest.approx(0.25)


# --------------------------------------------------------------------------------- batches


def test_pk_sampler_draws_p_classes_k_rows_and_repeats_by_seed():
    y = np.repeat(np.arange(6), 10)
    batches = list(PKBatchSampler(y, 3, 4, seed=7))
    assert len(batches) == 60 // 12
    for b in batches:
        classes, counts = np.unique(y[b], return_counts=True)
        assert len(classes) == 3 and set(counts) == {4} and len(set(b)) == 12
    assert batches == list(PKBatchSampler(y, 3, 4, seed=7))
    s = PKBatchSampler(y, 3, 4, seed=7)
    assert list(s) != list(s)  # the next epoch draws other batches


def test_pk_sampler_views_repeat_each_batch_view_major():
    y = np.repeat(np.arange(6), 10)
    plain, viewed = list(PKBatchSampler(y, 3, 4, seed=7)), list(PKBatchSampler(y, 3, 4, seed=7, views=3))
    assert [b * 3 for b in plain] == viewed  # the same rows, V copies: row i and row i + P*K are one image


def test_views_and_instance_weight_errors_name_the_value_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"data.views=2 without data.augment.*set data.augment: true"):
        MetricDigitsDataModule(train_classes=[0, 1, 2, 3, 4], views=2)
    with pytest.raises(ValueError, match=r"data.views must be >= 1"):
        MetricDigitsDataModule(train_classes=[0, 1, 2, 3, 4], views=0, augment=True)
    dm, model, trainer = _fit(tmp_path, epochs=1, loss="supcon", instance_weight=1.0)
    with pytest.raises(ValueError, match=r"model.instance_weight=1.0 needs .* gives 1; set data.views: 2"):
        trainer.fit(model, datamodule=dm)
    with pytest.raises(ValueError, match=r"model.class_weight=0.0 and model.instance_weight=0.0"):
        MetricLearningTask(model="simple_convnet", input_shape=(1, 8, 8), class_weight=0.0)


def test_instance_term_treats_each_images_views_as_its_own_class():
    model = MetricLearningTask(model="simple_convnet", input_shape=(1, 8, 8), model_kwargs={"padding": 2}, embedding_dim=8,
                               loss="supcon", class_weight=0.3, instance_weight=1.0)
    model._views = 2
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 8, 8, generator=g).repeat(2, 1, 1, 1)  # (24, 1, 8, 8): two views of 12 images
    y = (torch.arange(12) % 3).repeat(2)
    loss, _, rows = model.train()._loss((x, y))
    emb = model(x)
    inst = torch.arange(12).repeat(2)
    expected = 0.3 * supcon_loss(emb, y, 0.1)[0] + supcon_loss(emb, inst, 0.1)[0]
    assert rows == 24 and float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(model.eval()._loss((x, y))[0]) == pytest.approx(float(0.3 * supcon_loss(emb, y, 0.1)[0]), rel=1e-5)


def test_pk_errors_name_the_value_and_the_fix():
    y = np.array([0] * 10 + [1] * 10 + [2] * 3)
    with pytest.raises(ValueError, match=r"class 2 has 3 training rows, fewer than data.samples_per_class=4.*lower data.samples_per_class to 3"):
        PKBatchSampler(y, 2, 4)
    with pytest.raises(ValueError, match=r"data.classes_per_batch=5 but the training split has 3 classes"):
        PKBatchSampler(y, 5, 2)


def test_digits_split_trains_on_0_to_4_and_scores_unseen_5_to_9():
    dm = MetricDigitsDataModule(train_classes=[0, 1, 2, 3, 4], val_size=0.25, test_size=0.25)
    dm.setup("fit")
    assert set(dm.split_labels("train")) == {0, 1, 2, 3, 4}
    assert set(dm.split_labels("val")) == set(dm.split_labels("test")) == {5, 6, 7, 8, 9}
    s = dm.split_indices
    assert not set(s["val"]) & set(s["test"]) and len(s["train"]) + len(s["val"]) + len(s["test"]) == 1797
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (40, 1, 8, 8) and sorted(np.unique(y.numpy(), return_counts=True)[1]) == [8] * 5


def test_episodes_are_identical_on_every_call_and_too_many_ways_is_refused():
    y = np.repeat(np.arange(5), 20)
    s1, q1 = episode_indices(y, 5, 1, 50, seed=3)
    s2, q2 = episode_indices(y, 5, 1, 50, seed=3)
    assert np.array_equal(s1, s2) and np.array_equal(q1, q2) and s1.shape == (50, 5, 1) and q1.shape == (50, 5, 1)
    assert all(len(set(y[s1[e, :, 0]])) == 5 and (y[s1[e, :, 0]] == y[q1[e, :, 0]]).all() for e in range(50))
    emb = torch.nn.functional.one_hot(torch.as_tensor(y), 5).float()  # a perfect embedding
    assert episode_accuracy(emb, s1, q1).item() == 1.0
    with pytest.raises(ValueError, match=r"model.n_way=6-way 1-shot episodes need 6 classes.*lower model.n_way to 5"):
        episode_indices(y, 6, 1, 10, seed=0)


# ------------------------------------------------------------------------------ training


def _fit(tmp_path, epochs=2, **kw):
    pl.seed_everything(0, verbose=False)
    dm = MetricDigitsDataModule(train_classes=[0, 1, 2, 3, 4], val_size=0.25, test_size=0.25, batch_size=512,
                                classes_per_batch=5, samples_per_class=16)
    dm.setup("fit")
    args = dict(model="simple_convnet", model_kwargs={"padding": 2}, embedding_dim=16, episodes=300,
                verification_pairs=500, pictures=False, lr=0.002)
    args.update(kw)
    model = MetricLearningTask(input_shape=dm.input_shape, preprocessing=dm.preprocessing, **args)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    return dm, model, trainer


def test_threshold_is_chosen_on_validation_pairs_never_on_test(tmp_path):
    dm, model, trainer = _fit(tmp_path, loss="contrastive", margin=1.0)
    assert math.isnan(float(model.threshold))
    trainer.fit(model, datamodule=dm)
    emb = model.eval()(torch.from_numpy(dm.raw_x[dm.split_indices["val"]]))
    y = dm.split_labels("val")
    pairs, same = sample_pairs(y, 500, np.random.default_rng(0))
    d = (emb[pairs[:, 0]] - emb[pairs[:, 1]]).norm(dim=1)
    _, val_eer, val_t = equal_error(d, torch.as_tensor(same))
    assert float(model.threshold) == pytest.approx(val_t, abs=1e-5)
    assert model.last_metrics["val"]["eer"] == pytest.approx(val_eer, abs=1e-6)
    assert model.last_metrics["val"]["spread"] > 0.3 and 0 <= model.last_metrics["val"]["precision_at_1"] <= 1
    before = float(model.threshold)
    trainer.test(model, datamodule=dm, verbose=False)
    assert float(model.threshold) == before  # the test split never moves it
    test_emb = model(torch.from_numpy(dm.raw_x[dm.split_indices["test"]]))
    ty = dm.split_labels("test")
    tp, tsame = sample_pairs(ty, 500, np.random.default_rng(0))
    _, _, test_t = equal_error((test_emb[tp[:, 0]] - test_emb[tp[:, 1]]).norm(dim=1), torch.as_tensor(tsame))
    assert test_t != pytest.approx(before, abs=1e-6)  # the test's own equal-error point is elsewhere
    m = model.last_metrics["test"]
    assert {"oneshot_5way_acc", "roc_auc", "eer", "precision_at_1", "false_accept", "false_reject"} <= set(m)
    # Same episodes and pairs on every call: testing again gives the same numbers.
    trainer.test(model, datamodule=dm, verbose=False)
    assert model.last_metrics["test"] == m


def test_huge_learning_rate_ends_with_a_collapse_warning(tmp_path):
    dm, model, trainer = _fit(tmp_path, epochs=2, loss="triplet", mining="batch_hard", lr=5.0, optimizer="sgd", momentum=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=dm)
    msgs = [str(w.message) for w in caught if "embedding collapse" in str(w.message)]
    assert len(msgs) == 1 and "val/spread is" in msgs[0] and "below model.collapse_spread=0.05" in msgs[0]
    assert model.last_metrics["val"]["spread"] < 0.05


def test_instance_views_keep_five_training_digits_from_collapsing_the_embedding(tmp_path):
    # Class positives alone (supcon on digits 0-4) squeeze 5-9 together; adding each image's other
    # augmented view as its only positive keeps them apart (measured: one-shot 0.48 vs 0.70, ~7 s).
    scores = {}
    for name, views, kw in (("classes", 1, {"class_weight": 1.0}), ("instances", 2, {"class_weight": 0.3, "instance_weight": 1.0})):
        pl.seed_everything(0, verbose=False)
        dm = MetricDigitsDataModule(train_classes=[0, 1, 2, 3, 4], val_size=0.25, test_size=0.25, batch_size=512,
                                    classes_per_batch=5, samples_per_class=16, views=views, augment=True)
        dm.setup("fit")
        model = MetricLearningTask(input_shape=dm.input_shape, preprocessing=dm.preprocessing, model="simple_convnet",
                                   model_kwargs={"padding": 2}, embedding_dim=32, episodes=300, verification_pairs=500,
                                   pictures=False, lr=0.002, loss="supcon", **kw)
        trainer = pl.Trainer(max_epochs=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
        trainer.fit(model, datamodule=dm)
        scores[name] = model.last_metrics["val"]
    assert scores["instances"]["oneshot_5way_acc"] > scores["classes"]["oneshot_5way_acc"] + 0.1
    assert scores["instances"]["eer"] < scores["classes"]["eer"]


def test_configs_build_the_metric_task():
    from zoo.lightning_cli import ZooCLI

    for name, loss in (("siamese_digits", "supcon"), ("triplet_digits", "triplet")):
        c = ZooCLI(args=["--config", str(ROOT / f"configs/{name}.yaml")], run=False)
        assert isinstance(c.model, MetricLearningTask) and c.model.hparams.loss == loss
        assert c.datamodule.train_classes == [0, 1, 2, 3, 4]
        # Both learn from two augmented views of each image against the collapse of five classes.
        assert c.datamodule.views == 2 and c.datamodule.augment and c.model.hparams.instance_weight > 0
        monitors = {type(cb).__name__: cb.monitor for cb in c.trainer.callbacks if hasattr(cb, "monitor")}
        assert monitors["EarlyStopping"] == monitors["ZooModelCheckpoint"] == "val/eer"


# ------------------------------------------------------------------------ enrol / identify


def _write_people(root: Path, people: range, photos: int, rng: np.random.Generator, patterns: dict) -> None:
    from PIL import Image

    for p in people:
        if p not in patterns:
            patterns[p] = rng.uniform(0, 255, size=(4, 4))
        base = np.kron(patterns[p], np.ones((4, 4)))  # (16, 16): a blocky face of its own
        (root / f"person{p:02d}").mkdir(parents=True, exist_ok=True)
        for k in range(photos):
            img = np.clip(base + rng.normal(0, 8, base.shape) + rng.uniform(-8, 8), 0, 255).astype(np.uint8)
            Image.fromarray(img, mode="L").save(root / f"person{p:02d}" / f"p{p:02d}_{k}.png")


def test_enrol_identify_round_trip_on_an_image_folder(tmp_path, capsys):
    rng, patterns = np.random.default_rng(0), {}
    faces, gal, queries, stranger = tmp_path / "faces", tmp_path / "gallery", tmp_path / "queries", tmp_path / "stranger"
    _write_people(faces, range(16), 8, rng, patterns)  # training, validation and test people
    cli.main(["fit", "--config", str(ROOT / "configs/own_data/triplet_faces.yaml"), "--data.init_args.root", str(faces),
              "--data.init_args.image_size", "16", "--data.init_args.channels", "1", "--data.init_args.augment", "false",
              "--data.init_args.val_size", "0.25", "--data.init_args.test_size", "0.25",
              "--model.init_args.model", "simple_convnet", "--model.init_args.model_kwargs", "{padding: 2}",
              "--model.init_args.n_way", "3", "--model.init_args.episodes", "100", "--model.init_args.embedding_dim", "32",
              "--trainer.max_epochs", "6", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    run = tmp_path / "lightning_logs" / "version_0"
    ckpt = next((run / "checkpoints").glob("best*.ckpt"))
    assert (run / "oneshot_episodes.png").is_file() and (run / "embeddings" / "test.png").is_file()
    # Five new people, never in the training folder: one photo each enrolled, three more each queried.
    new = {}
    _write_people(gal, range(100, 105), 1, rng, new)
    _write_people(queries, range(100, 105), 3, rng, new)
    _write_people(stranger, range(200, 201), 3, rng, new)  # never enrolled
    out = tmp_path / "gallery.pt"
    cli.main(["enrol", "--ckpt", str(ckpt), "--folder", str(gal), "--out", str(out)])
    capsys.readouterr()
    cli.main(["identify", "--ckpt_path", str(ckpt), "--gallery", str(out), "--json", str(queries), str(stranger)])
    rows = json.loads(capsys.readouterr().out)
    known = [r for r in rows if "/stranger/" not in r["file"]]
    wrong = [r for r in known if r["identity"] != Path(r["file"]).parent.name]
    assert len(known) == 15 and not wrong, (wrong, rows)
    assert [r["identity"] for r in rows if "/stranger/" in r["file"]] == ["unknown"] * 3

    # A gallery built by another model, and a query of the wrong shape, get one line each.
    model = gallery.load_model(ckpt)
    g = gallery.load_gallery(out, model)
    other = gallery.load_model(ckpt)
    with torch.no_grad():
        other.embed.weight.add_(0.01)
    with pytest.raises(ValueError, match=r"was built by another model .* run `zoo enrol` again with this checkpoint"):
        gallery.load_gallery(out, other)
    with pytest.raises(ValueError, match=r"query samples have shape \(1, 8, 8\), the model takes \(1, 16, 16\)"):
        gallery.identify(model, g, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(SystemExit) as e:
        cli.main(["identify", "--ckpt", str(ckpt), "--gallery", str(tmp_path / "nope.pt"), str(queries)])
    assert e.value.code == 2 and "does not exist; build it with `zoo enrol`" in capsys.readouterr().err
