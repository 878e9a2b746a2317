"""SPINRec and its path integration: completeness, captum agreement, path selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from captum.attr import IntegratedGradients
from torch import nn

from data.errors import ReclensError
from engine import registry
from engine.contract import Recommender
from explainers.base import gather_probabilities, target_probabilities
from explainers.fidelity import fidelity_curves
from explainers.spinrec import SpinRec, choose, integrated_gradients, path_weights
from explainers.training_rows import TrainingRows

N_ITEMS = 24


class TinyMLP(Recommender):
    """A two-layer MLP recommender with a chosen link (no input normalisation)."""

    name = "tiny_mlp"
    link = "sigmoid"

    def __init__(self, n_items: int, link: str = "sigmoid", hidden: int = 16) -> None:
        super().__init__(n_items, link=link, hidden=hidden)
        self.link = link  # type: ignore[misc]
        self.enc = nn.Linear(n_items, hidden)
        self.dec = nn.Linear(hidden, n_items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(x)))


class Constant(Recommender):
    """Scores that ignore the history (a popularity model): every gradient is zero."""

    name = "constant"
    link = "softmax"

    def __init__(self, n_items: int) -> None:
        super().__init__(n_items)
        self.bias = nn.Parameter(torch.linspace(0, 1, n_items))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0 * x


def make_model(link: str = "sigmoid", seed: int = 0) -> TinyMLP:
    torch.manual_seed(seed)
    model = TinyMLP(N_ITEMS, link)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # sharper non-linearity, so paths matter
    return model.eval()


@pytest.fixture(scope="module")
def train() -> sp.csr_matrix:
    rng = np.random.default_rng(1)
    dense = (rng.random((40, N_ITEMS)) < 0.25).astype(np.float32)
    dense[0] = 0.0  # an empty user never serves as a baseline
    dense[1, :6] = 1.0
    dense[1, 6:] = 0.0
    return sp.csr_matrix(dense)


def row(train: sp.csr_matrix, u: int) -> torch.Tensor:
    return torch.from_numpy(train[u].toarray()[0])


def prob(model: Recommender, x: torch.Tensor, t: int) -> float:
    with torch.no_grad():
        return float(model.probability(model(x[None]))[0, t])


def test_path_weights():
    a, w = path_weights(4, "right")
    assert a.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert w.tolist() == [0, 0.25, 0.25, 0.25, 0.25]
    _, w = path_weights(4, "trapezoid")
    assert w.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]
    with pytest.raises(ReclensError):
        path_weights(0)
    with pytest.raises(ReclensError):
        path_weights(4, "simpson")


@pytest.mark.parametrize("link", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("rule", ["right", "trapezoid"])
def test_completeness(train, link, rule):
    model = make_model(link)
    x, t = row(train, 5), 7
    attr = integrated_gradients(model, x, t, steps=256, rule=rule)
    expected = prob(model, x, t) - prob(model, torch.zeros_like(x), t)
    assert abs(expected) > 1e-4
    assert float(attr.sum()) == pytest.approx(expected, rel=0.02)
    # from a sampled (training user) baseline too
    b = row(train, 9)
    attr = integrated_gradients(model, x, t, baseline=b, steps=256, rule=rule)
    expected = prob(model, x, t) - prob(model, b, t)
    assert float(attr.sum()) == pytest.approx(expected, rel=0.02, abs=1e-6)


@pytest.mark.parametrize("link", ["sigmoid", "softmax"])
def test_agrees_with_captum(train, link):
    model = make_model(link)
    x, b, t = row(train, 5), row(train, 9), 3

    def forward(inp: torch.Tensor) -> torch.Tensor:
        return model.probability(model(inp))

    ig = IntegratedGradients(forward)
    for base in (torch.zeros_like(x), b):
        ours = integrated_gradients(model, x, t, baseline=base, steps=16)
        theirs = ig.attribute(
            x[None], baselines=base[None], target=t, n_steps=16, method="riemann_right"
        )[0]
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


def test_candidates_are_path_integrals_and_selection(train):
    model = make_model("softmax")
    x = row(train, 5)
    spin = SpinRec(train, kappa=6, steps=8)
    exp = spin.explain(model, x, user=5, seed=3)
    items = np.flatnonzero(x.numpy() > 0)
    assert exp.items.tolist() == items.tolist()
    # default target: top-1 outside the history
    with torch.no_grad():
        s = model(x[None])[0].masked_fill(x > 0, float("-inf"))
    assert exp.target == int(s.argmax())
    assert exp.kappa == 6 and exp.candidates.shape == (6, items.size)
    for k, bu in enumerate(exp.baseline_users):
        b = row(train, int(bu))
        assert not torch.equal(b, x) and b.sum() > 0
        dense = integrated_gradients(model, x, exp.target, baseline=b, steps=8).numpy()
        # x_i * mean_grad_i * (x_i - b_i): the IG attribution, zero where b shares the item
        np.testing.assert_allclose(exp.candidates[k], dense[items], rtol=1e-4, atol=1e-9)
        assert np.all(exp.candidates[k][b.numpy()[items] > 0] == 0)
        # path curve: column 0 is the baseline, the last column the user
        assert exp.path_probability[k, 0] == pytest.approx(prob(model, b, exp.target), rel=1e-5)
        assert exp.path_probability[k, -1] == pytest.approx(exp.target_probability, rel=1e-6)
    dels = fidelity_curves(model, x, exp.target, exp.candidates).metrics()["del_auc"]
    np.testing.assert_allclose(exp.criterion, dels, rtol=1e-6)
    assert exp.chosen == int(np.argmin(dels))
    assert choose(np.array([0.5, 0.3 + 1e-8, 0.3, 0.3 + 1e-3])) == 1  # ties within rounding
    np.testing.assert_array_equal(exp.scores, exp.candidates[exp.chosen])
    assert exp.alphas.tolist() == pytest.approx(np.arange(9) / 8)


def test_seeded_and_batched(train):
    model = make_model("softmax")
    spin = SpinRec(train, kappa=5, steps=4, batch_users=2)
    users = [3, 5, 7]
    xs = torch.stack([row(train, u) for u in users])
    batch = spin.explain_batch(model, xs, users=users, seed=11)
    again = spin.explain_batch(model, xs, users=users, seed=11)
    for u, a, b in zip(users, batch, again, strict=True):
        single = spin.explain(model, row(train, u), user=u, seed=11)
        np.testing.assert_array_equal(a.baseline_users, single.baseline_users)
        np.testing.assert_allclose(a.candidates, single.candidates, rtol=1e-5, atol=1e-10)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.user == u
    other = spin.explain(model, row(train, 3), user=3, seed=12)
    assert not np.array_equal(other.baseline_users, batch[0].baseline_users)


def test_baseline_equal_to_user_is_redrawn():
    dense = np.zeros((30, 8), dtype=np.float32)
    dense[:, :3] = 1.0  # 29 users share the explained history ...
    dense[29, 5] = 1.0  # ... one differs
    dense[29, :3] = 0.0
    train = sp.csr_matrix(dense)
    model = TinyMLP(8)
    exp = SpinRec(train, kappa=4, steps=4).explain(model, dense[0], user=0)
    assert exp.baseline_users.tolist() == [29] * 4
    only_same = sp.csr_matrix(dense[:29])
    with pytest.raises(ReclensError):
        SpinRec(only_same, kappa=2, steps=2).explain(model, dense[0], user=0)
    # the same positive items count as the same history, whatever the stored values: an
    # explicit zero at another item or a weaker value does not make a row differ
    stored = sp.csr_matrix(
        (np.array([1.0, 1.0, 0.5, 0.0]), np.array([0, 1, 2, 6]), np.array([0, 4])), shape=(1, 8)
    )
    messy = sp.vstack([stored, stored, sp.csr_matrix(dense[29:])]).tocsr()
    exp = SpinRec(messy, kappa=3, steps=2).explain(model, dense[0], user=0)
    assert exp.baseline_users.tolist() == [2] * 3


def test_unobserved_extension_and_constant_model(train):
    model = make_model("sigmoid")
    x = row(train, 5)
    exp = SpinRec(train, kappa=3, steps=4, unobserved=True).explain(model, x, target=2)
    assert exp.unobserved_items is not None and exp.unobserved_scores is not None
    assert set(exp.unobserved_items) == set(np.flatnonzero(x.numpy() == 0))
    xg = x.clone().requires_grad_(True)
    torch.sigmoid(model(xg[None]))[0, 2].backward()
    np.testing.assert_allclose(
        exp.unobserved_scores, xg.grad.numpy()[exp.unobserved_items], rtol=1e-5, atol=1e-9
    )
    flat = SpinRec(train, kappa=3, steps=4).explain(Constant(N_ITEMS), x)
    assert np.all(flat.scores == 0) and np.isfinite(flat.criterion).all()


def test_bad_input(train):
    model = make_model()
    with pytest.raises(ReclensError):
        SpinRec(train, kappa=0)
    with pytest.raises(ReclensError):
        SpinRec(None)  # type: ignore[arg-type]
    with pytest.raises(ReclensError):
        SpinRec(train).explain(model, torch.zeros(N_ITEMS))
    with pytest.raises(ReclensError):
        SpinRec(train).explain(model, torch.ones(N_ITEMS + 1))
    with pytest.raises(ReclensError):
        SpinRec(train).explain(model, row(train, 5), target=N_ITEMS)


def test_dense_rows_match_toarray_and_leave_the_input_alone():
    rng = np.random.default_rng(4)
    dense = (rng.random((12, N_ITEMS)) < 0.3).astype(np.float32)
    dense[3] = 0.0
    canonical = sp.csr_matrix(dense)
    spin = SpinRec(canonical, kappa=2, steps=2)
    users = np.array([5, 3, 5, 0, 11], dtype=np.int64)
    np.testing.assert_array_equal(spin.rows.dense(users), canonical[users].toarray())
    # duplicate entries (not canonical) are summed, as toarray does, on a copy
    rows, cols = np.nonzero(dense)
    rows, cols = np.concatenate([rows, rows[:5]]), np.concatenate([cols, cols[:5]])
    messy = sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=dense.shape)
    messy.has_canonical_format = False
    before = messy.data.copy()
    spin = SpinRec(messy, kappa=2, steps=2)
    np.testing.assert_array_equal(spin.rows.dense(users), messy[users].toarray())
    np.testing.assert_array_equal(messy.data, before)


def test_first_sums_equal_the_dense_product_in_either_layout():
    rng = np.random.default_rng(5)
    dense = (rng.random((12, N_ITEMS)) < 0.3) * rng.random((12, N_ITEMS))
    dense[3] = 0.0  # an empty row sums to zero
    rows = TrainingRows(sp.csr_matrix(dense.astype(np.float32)))
    users = np.array([5, 3, 5, 0, 11], dtype=np.int64)
    layer = nn.Linear(N_ITEMS, 7)  # a first layer read as its weight's transpose, as Mult-VAE's
    densified = torch.from_numpy(rows.dense(users))
    want = densified @ layer.weight.T.detach()
    for weight in (layer.weight.T.detach(), layer.weight.T.detach().contiguous()):
        torch.testing.assert_close(rows.first_sums(weight, users, densified), want)


def test_gather_probabilities_matches_target_probabilities(train):
    model = make_model("softmax")
    rows = torch.from_numpy(train[:9].toarray())
    index = np.array([4, 0, 4, 8, 2, 2, 7], dtype=np.int64)  # rows scored for several targets
    targets = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    for chunk in (2, 3, 512):
        got = gather_probabilities(model, rows, index, targets, chunk_size=chunk)
        want = target_probabilities(
            model, rows[torch.from_numpy(index)], torch.from_numpy(targets), chunk_size=chunk
        )
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("rule", ["right", "trapezoid"])
def test_chunked_batched_explanations_match(train, rule):
    model = make_model("softmax")
    users = [3, 5, 7, 9]
    xs = torch.stack([row(train, u) for u in users])
    whole = SpinRec(train, kappa=5, steps=4, rule=rule, batch_users=4, chunk_size=512)
    small = SpinRec(train, kappa=5, steps=4, rule=rule, batch_users=3, chunk_size=7)
    a = whole.explain_batch(model, xs, users=users, seed=2)
    b = small.explain_batch(model, xs, users=users, seed=2)
    for u, ea, eb in zip(users, a, b, strict=True):
        np.testing.assert_array_equal(ea.baseline_users, eb.baseline_users)
        # other chunk boundaries: the same numbers up to float32 rounding
        np.testing.assert_allclose(ea.candidates, eb.candidates, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(ea.criterion, eb.criterion, rtol=1e-5)
        np.testing.assert_allclose(ea.path_probability, eb.path_probability, rtol=1e-5)
        assert ea.chosen == eb.chosen
        x = row(train, u)
        for k, bu in enumerate(ea.baseline_users):
            b = row(train, int(bu))
            dense = integrated_gradients(model, x, ea.target, baseline=b, steps=4, rule=rule)
            np.testing.assert_allclose(
                ea.candidates[k], dense.numpy()[ea.items], rtol=1e-4, atol=1e-9
            )
            assert ea.path_probability[k, 0] == pytest.approx(prob(model, b, ea.target), rel=1e-5)
            assert ea.path_probability[k, -1] == pytest.approx(prob(model, x, ea.target), rel=1e-5)


def test_training_mode_is_restored_and_ignored(train):
    model = make_model("softmax")
    x = row(train, 5)
    reference = SpinRec(train, kappa=4, steps=4).explain(model, x, user=5)
    model.train()
    again = SpinRec(train, kappa=4, steps=4).explain(model, x, user=5)
    assert model.training and all(m.training for m in model.modules())
    np.testing.assert_array_equal(again.candidates, reference.candidates)
    np.testing.assert_array_equal(again.criterion, reference.criterion)


# -- the model's shortcuts: the same explanations as through forward alone ------------------


class Bare(nn.Module):
    """A model seen through ``forward`` and its link only (every shortcut hidden)."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model
        self.n_items = model.n_items

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def probability(self, scores: torch.Tensor) -> torch.Tensor:
        return self.model.probability(scores)


def shortcut_model(name: str) -> Recommender:
    from engine import registry

    torch.manual_seed(3)
    model = registry.create(name, N_ITEMS)
    if name in ("fism", "fism-neumf"):  # their initial factors (std 0.01) give near-flat scores
        for p in model.parameters():
            nn.init.normal_(p, std=0.3)
    return model.eval()


@pytest.mark.parametrize("name", ["fism", "fism-neumf", "multvae", "multdae"])
@pytest.mark.parametrize("rule", ["right", "trapezoid"])
def test_shortcuts_give_the_bare_models_explanations(train, name, rule):
    """Same targets and chosen paths; maps equal up to float32 rounding, which reaches about
    1e-6 of the largest attribution through the autoencoders' 600-wide layers (both paths
    differ from a float64 computation by as much), hence a tolerance of 5e-6."""
    model = shortcut_model(name)
    tol = 5e-6
    assert model.first_layer() is not None
    spin = SpinRec(train, kappa=6, steps=5, rule=rule, unobserved=True, batch_users=3)
    x = torch.from_numpy(train[2:9].toarray())
    fast = spin.explain_batch(model, x, users=list(range(2, 9)))
    slow = spin.explain_batch(Bare(model), x, users=list(range(2, 9)))
    for a, b in zip(fast, slow, strict=True):
        scale = np.abs(b.candidates).max()
        assert a.target == b.target and a.chosen == b.chosen
        np.testing.assert_allclose(a.candidates, b.candidates, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(a.criterion, b.criterion, rtol=tol)
        np.testing.assert_allclose(a.path_probability, b.path_probability, rtol=tol)
        unobserved_scale = np.abs(b.unobserved_scores).max()
        np.testing.assert_allclose(
            a.unobserved_scores, b.unobserved_scores, rtol=0, atol=tol * unobserved_scale
        )
    ig_fast = integrated_gradients(model, x[0], 3, steps=8, rule=rule)
    ig_slow = integrated_gradients(Bare(model), x[0], 3, steps=8, rule=rule)
    torch.testing.assert_close(ig_fast, ig_slow, rtol=0, atol=tol * float(ig_slow.abs().max()))


@pytest.mark.parametrize("name", ["fism", "fism-neumf", "multvae"])
def test_shortcuts_give_the_bare_models_fidelity(train, name):
    model = shortcut_model(name)
    x = row(train, 3)
    items = np.flatnonzero(x.numpy() > 0)
    maps = np.random.default_rng(0).random((3, items.shape[0]))
    fast = fidelity_curves(model, x, 5, maps).metrics()
    slow = fidelity_curves(Bare(model), x, 5, maps).metrics()
    for metric, value in slow.items():
        np.testing.assert_allclose(fast[metric], value, rtol=1e-5, atol=1e-7, err_msg=metric)


def test_path_selection_is_a_parameter() -> None:
    """del picks the lowest deletion AUC (the default), a metric picks its best candidate,
    none keeps the first path; the candidates are the same maps whatever the selection."""
    from explainers.registry import create

    model = make_model()
    n_items = N_ITEMS
    rng = np.random.default_rng(1)
    train = sp.csr_matrix((rng.random((40, n_items)) < 0.3).astype(np.float32))
    x = torch.zeros(n_items)
    x[[1, 4, 7, 9, 13, 20, 22]] = 1.0
    made = {
        name: create(name, train=train, kappa=6, steps=4).explain(model, x, 3, user=5, seed=2)
        for name in ("spinrec", "spinrec_ins", "spinrec_single")
    }
    np.testing.assert_array_equal(made["spinrec"].candidates, made["spinrec_single"].candidates)
    assert made["spinrec"].select == "del" and made["spinrec"].chosen == int(
        np.argmin(made["spinrec"].criterion)
    )
    assert made["spinrec_single"].chosen == 0 and made["spinrec_single"].select == "none"
    curves = fidelity_curves(model, x, 3, made["spinrec"].candidates, made["spinrec"].items)
    ins = curves.metrics()["ins_auc"]
    assert made["spinrec_ins"].chosen == int(np.argmax(ins))
    np.testing.assert_allclose(made["spinrec_ins"].criterion, -ins)
    with pytest.raises(ReclensError, match="unknown SPINRec selection 'best'"):
        create("spinrec", train=train, select="best")


def test_default_batch_size_follows_what_bounds_the_model() -> None:
    """32 users a pass for pointwise models with a linear first layer (fixed cost bound), 8 for
    a softmax one and for a model without a first layer (matrix-product bound); an explicit
    ``batch_users`` wins."""
    fism = registry.model_class("fism")(12).eval()
    multvae = registry.model_class("multvae")(12).eval()
    assert SpinRec.default_batch_users(fism) == 32
    assert SpinRec.default_batch_users(multvae) == 8
    assert SpinRec.default_batch_users(Bare(fism)) == 8
    train = sp.random(20, 12, density=0.4, format="csr", random_state=0, dtype=np.float32)
    train.data[:] = 1.0
    assert SpinRec(train).batch_users is None
    assert SpinRec(train, batch_users=3).batch_users == 3
