"""common.active: acquisition scores (closed forms, baal), MC dropout without T x memory (against the stacked
passes and baal), core-set against brute force, BADGE's seeding, BatchBALD against enumeration, TypiClust and
ProbCover on separated clusters, the loop's resume and the annotator's CSV."""

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from common.active import annotator, scores
from common.active.batchbald import batch_bald, batch_mutual_information, power_bald
from common.active.diversity import k_center_greedy, kmeans_pp, prob_cover, typiclust
from common.active.learner import EngineLearner, TrainConfig
from common.active.loop import ActiveConfig, TruthOracle, check_config, run_active
from common.active.mc import head_passes, loop_passes, naive_passes
from common.active.pool import gradient_embedding, score_pool
from common.active.strategies import STRATEGIES, select
from common.errors import InputError
from common.models.smallcnn import SmallCNN


def dirichlet(n, c, t=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, t) if t else (n,)
    p = rng.dirichlet(np.ones(c) * 0.7, size=shape)  # (n[, t], c)
    return np.moveaxis(p, -1, 1) if t else p          # (n, c[, t])


class Images(Dataset):
    """A tiny pool: random 16 px images whose label is whether the left half is brighter."""

    def __init__(self, n, seed=0, size=16):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, size, size, generator=g)
        self.x[: n // 2, :, :, : size // 2] += 0.5
        self.y = (self.x[:, 0, :, : size // 2].mean((1, 2)) > self.x[:, 0, :, size // 2:].mean((1, 2))).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


# ------------------------------------------------------------------------------------------------ scores


def test_scores_closed_forms():
    p = np.array([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0], [0.6, 0.3]])
    p = p / p.sum(1, keepdims=True)
    np.testing.assert_allclose(scores.least_confidence(p), 1 - p.max(1))
    np.testing.assert_allclose(scores.margin(p[:3]), [1.0, 0.2, 0.0])
    np.testing.assert_allclose(scores.entropy(p[:3]), [math.log(2), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), 0])
    # two passes that disagree completely: all of the entropy is disagreement; passes that agree: none is
    disagree = np.array([[[1.0, 0.0], [0.0, 1.0]]])                   # (1, C=2, T=2)
    agree = np.array([[[0.5, 0.5], [0.5, 0.5]]])
    np.testing.assert_allclose(scores.bald(disagree), [math.log(2)], atol=1e-9)
    np.testing.assert_allclose(scores.bald(agree), [0.0], atol=1e-12)
    np.testing.assert_array_equal(scores.top_k(np.array([0.1, 0.5, 0.5, 0.9]), 3), [3, 1, 2])


def test_scores_against_baal():
    heur = pytest.importorskip("baal.active.heuristics")
    p, mc = dirichlet(50, 3), dirichlet(50, 3, 7, seed=1)
    np.testing.assert_allclose(scores.entropy(p), heur.Entropy().get_uncertainties(p), rtol=1e-6)
    np.testing.assert_allclose(scores.margin(p), 1 - heur.Margin().get_uncertainties(p), rtol=1e-6)
    np.testing.assert_allclose(scores.least_confidence(p), 1 - heur.Certainty().get_uncertainties(p), rtol=1e-6)
    np.testing.assert_allclose(scores.bald(mc), heur.BALD().get_uncertainties(mc), rtol=1e-6, atol=1e-9)
    # the same order as baal's ranking (it ranks ascending for margin / certainty)
    np.testing.assert_array_equal(scores.top_k(scores.bald(mc), 10), heur.BALD()(mc)[:10])
    np.testing.assert_array_equal(scores.top_k(scores.margin(p), 10), heur.Margin()(p)[:10])


# ------------------------------------------------------------------------------------------------ MC dropout


def tiny_model(seed=0, dropout=0.5, classes=2):
    torch.manual_seed(seed)
    return SmallCNN(1, classes, width=4, stages=2, dropout=dropout).eval()


def test_head_passes_equal_the_stacked_full_passes():
    model, x = tiny_model(), torch.rand(5, 1, 16, 16)
    torch.manual_seed(3)
    head = head_passes(model, model.embed(x), 6)
    torch.manual_seed(3)
    naive = naive_passes(model, x, 6)                  # the batch stacked 6 times through the whole network
    assert head.shape == (5, 2, 6)
    torch.testing.assert_close(head, naive, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(scores.bald(head.detach()), scores.bald(naive.detach()), atol=1e-5)
    assert not torch.allclose(head[..., 0], head[..., 1])  # the passes differ: dropout was sampled
    assert not model.dropout.training                      # the model's mode is left as it was


def test_loop_passes_sample_dropout_and_restore_mode():
    model, x = tiny_model(), torch.rand(3, 1, 16, 16)
    probs = loop_passes(model, x, 4)
    assert probs.shape == (3, 2, 4) and not torch.allclose(probs[..., 0], probs[..., 1])
    torch.testing.assert_close(probs.sum(1), torch.ones(3, 4))
    assert not model.training and not model.dropout.training and not model.stages[0][1].training


class Tuples(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 0


def test_pool_bald_equals_baal_predict_on_dataset():
    baal_dropout = pytest.importorskip("baal.bayesian.dropout")
    from baal.active.heuristics import BALD
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    model, pool = tiny_model(1), Images(23)
    view = score_pool(model, pool, np.arange(23), 23, {"mc"}, passes=5, batch_size=8, seed=11, progress=False)
    wrapped = ModelWrapper(baal_dropout.patch_module(copy.deepcopy(model)),
                           TrainingArgs(batch_size=8, use_cuda=False, workers=0, replicate_in_memory=True))
    torch.manual_seed(11)
    logits = wrapped.predict_on_dataset(Tuples(pool.x), iterations=5, verbose=False)   # (N, C, T)
    ref = torch.softmax(torch.as_tensor(logits), 1).numpy()
    np.testing.assert_allclose(view.mc, ref, atol=1e-5)
    np.testing.assert_allclose(scores.bald(view.mc), BALD().get_uncertainties(logits), atol=1e-5)


def test_score_pool_batches_do_not_change_deterministic_summaries():
    model, pool = tiny_model(2), Images(19)
    a = score_pool(model, pool, np.arange(19), 12, {"probs", "embed", "grad"}, batch_size=4, progress=False)
    b = score_pool(model, pool, np.arange(19), 12, {"probs", "embed", "grad"}, batch_size=64, progress=False)
    for k in ("probs", "embed", "grad"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), atol=1e-5)
    assert a.candidates("embed").shape == (12, 8) and a.labelled("embed").shape == (7, 8) and a.mc is None


def test_gradient_embedding_is_the_last_layer_gradient():
    model, x = tiny_model(4, dropout=0.0, classes=3), torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        emb = model.embed(x)
        probs = torch.softmax(model.classifier(emb), 1)
    got = gradient_embedding(probs, emb)
    for i in range(4):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model.classifier(emb[i:i + 1]), probs[i:i + 1].argmax(1))
        loss.backward()
        torch.testing.assert_close(got[i], model.classifier.weight.grad.flatten(), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ diversity


def covering_radius(x, centres):
    return np.sqrt(((x[:, None] - x[centres][None]) ** 2).sum(-1).min(1)).max()


def test_k_center_greedy_against_brute_force():
    rng = np.random.default_rng(0)
    x, labelled = rng.normal(size=(12, 2)), rng.normal(size=(2, 2))
    picks = k_center_greedy(x, labelled, 3)
    # the greedy trace by hand: each pick the farthest from every centre so far (full distance matrix)
    centres, expect = list(labelled), []
    for _ in range(3):
        d = np.array([min(np.sum((p - c) ** 2) for c in centres) for p in x])
        d[expect] = -1
        expect.append(int(np.argmax(d)))
        centres.append(x[expect[-1]])
    np.testing.assert_array_equal(picks, expect)
    # and the 2-approximation of the k-center optimum (Gonzalez 1985), optimum by trying every subset
    free = k_center_greedy(x, np.zeros((0, 2)), 3)
    best = min(covering_radius(x, list(c)) for c in itertools.combinations(range(12), 3))
    assert covering_radius(x, free) <= 2 * best + 1e-9


def test_kmeans_pp_is_seeded_and_samples_by_squared_distance():
    x = np.array([[3.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    a, b = kmeans_pp(x, 3, np.random.default_rng(7)), kmeans_pp(x, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a[0] == 0 and len(set(a.tolist())) == 3             # the largest norm first, then distinct points
    second = np.array([kmeans_pp(x, 2, np.random.default_rng(s))[1] for s in range(3000)])
    d2 = ((x - x[0]) ** 2).sum(1)
    freq = np.bincount(second, minlength=4) / len(second)
    np.testing.assert_allclose(freq, d2 / d2.sum(), atol=0.03)  # 9 : 4 : 13 of the 26


def blobs(seed=0, per=15):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = np.concatenate([c + rng.normal(scale=0.5, size=(per, 2)) for c in centres])
    return x, np.repeat(np.arange(4), per), centres


def test_typiclust_takes_the_typical_point_of_each_uncovered_cluster():
    x, blob, centres = blobs()
    labelled = x[blob == 0][:1]
    cand = np.delete(x, np.flatnonzero(blob == 0)[0], axis=0)
    cand_blob = np.delete(blob, np.flatnonzero(blob == 0)[0])
    picks = typiclust(cand, labelled, 3, seed=0, neighbours=5, min_cluster=2)
    assert sorted(cand_blob[picks].tolist()) == [1, 2, 3]        # one from each blob without a label
    for p in picks:                                               # the most typical is near its blob's middle
        mine = cand[cand_blob == cand_blob[p]]
        assert np.linalg.norm(cand[p] - mine.mean(0)) < np.median(np.linalg.norm(mine - mine.mean(0), axis=1))


def test_prob_cover_covers_each_blob_once():
    x, blob, _ = blobs(1)
    picks = prob_cover(x[blob != 0], x[blob == 0][:2], 3, delta=3.0)
    assert sorted(blob[blob != 0][picks].tolist()) == [1, 2, 3]


# ------------------------------------------------------------------------------------------------ batch-aware


def test_batch_mutual_information_by_hand():
    # one item, two passes: its BALD
    one = dirichlet(1, 2, 2, seed=3)
    assert math.isclose(batch_mutual_information(one), float(scores.bald(one)[0]), abs_tol=1e-9)
    # two independent-looking copies of a confident-but-split item: p_t = (1, 0) in pass 0, (0, 1) in pass 1
    split = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    pair = np.concatenate([split, split])
    # joint configurations (0,0) and (1,1), each with probability 1/2: H = ln 2, no conditional entropy
    assert math.isclose(batch_mutual_information(pair), math.log(2), abs_tol=1e-9)


def test_batch_bald_is_greedy_in_the_joint_information_and_skips_duplicates():
    mc = dirichlet(14, 2, 6, seed=5)
    orig = int(np.argmax(scores.bald(mc)))
    assert orig != 7
    mc[7] = mc[orig]                                            # a duplicate of the most informative item
    picks = batch_bald(mc, 3, np.random.default_rng(0))
    assert picks[0] == int(np.argmax(scores.bald(mc)))
    best = [batch_mutual_information(mc[[picks[0], n]]) for n in range(14)]
    best[picks[0]] = -1
    assert picks[1] == int(np.argmax(best))
    assert len({orig, 7} & set(picks.tolist())) == 1            # one copy only ...
    assert set(scores.top_k(scores.bald(mc), 2).tolist()) == {orig, 7}  # ... where top-k BALD takes both
    # the sampled estimator of the joint entropy (past max_configs) agrees with the exact one here
    sampled = batch_bald(mc, 3, np.random.default_rng(0), max_configs=1, samples=20_000)
    np.testing.assert_array_equal(sampled[:2], picks[:2])


def test_power_bald_is_seeded_and_favours_high_bald():
    mc = dirichlet(40, 2, 8, seed=2)
    a, b = power_bald(mc, 5, np.random.default_rng(1)), power_bald(mc, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    draws = np.concatenate([power_bald(mc, 5, np.random.default_rng(s), beta=4) for s in range(200)])
    assert scores.bald(mc)[draws].mean() > scores.bald(mc).mean()


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_picks_k_distinct_candidates(name):
    model, pool = tiny_model(3), Images(30)
    view = score_pool(model, pool, np.arange(30), 24, STRATEGIES[name].needs | {"probs"}, passes=4,
                      progress=False)
    picked = select(name, view, 6, np.random.default_rng(0))
    assert len(set(picked.tolist())) == 6 and picked.max() < 24
    np.testing.assert_array_equal(picked, select(name, view, 6, np.random.default_rng(0)))  # seeded


def test_at_least_eight_strategies():
    assert len(STRATEGIES) >= 8 and "random" in STRATEGIES


# ------------------------------------------------------------------------------------------------ loop


def learner_for(pool, test):
    cfg = TrainConfig(epochs=1, batch_size=16, lr=3e-3, min_samples=32)
    return EngineLearner(lambda: SmallCNN(1, 2, width=2, stages=1, dropout=0.3), pool, cfg, test, test.y.numpy())


def test_resume_after_a_kill_between_rounds_gives_the_same_picks(tmp_path):
    pool, test = Images(40), Images(20, seed=1)
    cfg = ActiveConfig(strategy="bald", initial=6, query=5, budget=21, passes=3, seed=1)  # MC dropout: seeded too
    whole = run_active(cfg, pool, learner_for(pool, test), TruthOracle(pool.y), tmp_path / "a", progress=False)
    part = run_active(cfg, pool, learner_for(pool, test), TruthOracle(pool.y), tmp_path / "b", progress=False,
                      stop_after=2)
    assert part["status"] == "stopped" and len(part["rounds"]) == 2
    resumed = run_active(cfg, pool, learner_for(pool, test), TruthOracle(pool.y), tmp_path / "b", progress=False)
    assert whole["status"] == resumed["status"] == "done"
    assert [r["picked"] for r in whole["rounds"]] == [r["picked"] for r in resumed["rounds"]]
    assert [r["n_labels"] for r in whole["rounds"]] == [6, 11, 16, 21]
    assert whole["labelled"] == resumed["labelled"] and len(set(whole["labelled"])) == 21
    np.testing.assert_array_equal(whole["labels"], pool.y[whole["labelled"]].numpy())


def test_resume_refuses_other_settings(tmp_path):
    pool, test = Images(30), Images(10, seed=1)
    cfg = ActiveConfig(strategy="entropy", initial=5, query=5, budget=10)
    run_active(cfg, pool, learner_for(pool, test), TruthOracle(pool.y), tmp_path, progress=False, stop_after=1)
    with pytest.raises(InputError, match="other settings: query"):
        run_active(ActiveConfig(strategy="entropy", initial=5, query=4, budget=10), pool, learner_for(pool, test),
                   TruthOracle(pool.y), tmp_path, progress=False)


@pytest.mark.parametrize("cfg,match", [(ActiveConfig(initial=20, budget=10), "below the initial"),
                                       (ActiveConfig(initial=5, query=40, budget=50), "larger than the 25"),
                                       (ActiveConfig(initial=31, budget=40), "larger than the pool"),
                                       (ActiveConfig(strategy="nope"), "unknown strategy")])
def test_check_config_errors(cfg, match):
    with pytest.raises(InputError, match=match):
        check_config(cfg, 30)


def test_annotator_csv_round_trip_and_errors(tmp_path):
    images = [np.full((8, 8), v, np.float32) for v in (0.0, 0.5, 1.0)]
    path = annotator.write_query(tmp_path, 2, [7, 3, 9], images)
    assert path == tmp_path / "round_2" / "query" / "labels.csv"
    assert len(list(path.parent.glob("*.png"))) == 3
    classes = ("normal", "abnormal")
    with pytest.raises(InputError, match="row 2 .* has no label"):
        annotator.read_labels(tmp_path, 2, [7, 3, 9], classes)
    text = path.read_text().splitlines()
    filled = [text[0]] + [line + lab for line, lab in zip(text[1:], ["abnormal", "0", "Normal"], strict=True)]
    path.write_text("\n".join(filled) + "\n")
    np.testing.assert_array_equal(annotator.read_labels(tmp_path, 2, [7, 3, 9], classes), [1, 0, 0])
    path.write_text("\n".join(filled[:-1] + [filled[-1].replace("Normal", "fracture")]) + "\n")
    with pytest.raises(InputError, match="'fracture' is not one of the classes"):
        annotator.read_labels(tmp_path, 2, [7, 3, 9], classes)
    path.write_text("\n".join(filled[:-1]) + "\n")
    with pytest.raises(InputError, match="first pool index 9"):
        annotator.read_labels(tmp_path, 2, [7, 3, 9], classes)
