"""DiffRec: schedule, posterior, loss bookkeeping, contract (shapes, gradients), training."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from data.errors import ReclensError
from data.splits import split
from data.synthetic import generate
from engine import registry
from engine.contract import LossContext
from engine.evaluate import evaluate
from engine.models.diffrec import DiffRec, diffusion_schedule
from engine.train import TrainConfig, fit

SCHEDULE_CASES = [
    ("linear-var", 0.1, 0.0005, 0.005),
    ("linear-var", 1.0, 0.1, 0.5),
    ("linear", 0.001, 0.0005, 0.005),
    ("linear", 1.0, 0.01, 0.2),
    ("cosine", 1.0, 0.0005, 0.005),
]


def _ctx(batch: int, seed: int = 0) -> LossContext:
    return LossContext(
        generator=torch.Generator().manual_seed(seed),
        step=0,
        total_steps=1,
        train=sp.csr_matrix((batch, 1)),
        users=torch.arange(batch),
    )


def _histories(n_users: int, n_items: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.random((n_users, n_items)) < 0.2).astype(np.float32))


@pytest.mark.parametrize("kind,scale,lo,hi", SCHEDULE_CASES)
@pytest.mark.parametrize("fixed", [False, True])
def test_schedule_is_monotone_and_within_bounds(kind, scale, lo, hi, fixed) -> None:
    s = diffusion_schedule(7, kind, scale, lo, hi, beta_fixed=fixed)
    betas, abar = s["betas"], s["alphas_cumprod"]
    assert betas.shape == abar.shape == (7,)
    assert np.all(betas > 0) and np.all(betas < 1)
    assert np.all(np.diff(abar) < 0), "abar_t must decrease strictly"
    assert np.all(abar > 0) and np.all(abar < 1)
    assert s["alphas_cumprod_prev"][0] == 1.0
    np.testing.assert_allclose(s["alphas_cumprod_prev"][1:], abar[:-1])
    np.testing.assert_allclose(abar, np.cumprod(1 - betas))
    assert np.all(np.diff(s["snr"]) < 0)
    assert np.all(s["loss_weight"][1:] > 0) and s["loss_weight"][0] == 1.0
    if fixed:
        assert betas[0] == pytest.approx(1e-5)
    if kind == "linear-var" and not fixed:
        # the variance 1 - abar_t is exactly the scaled linear ramp
        np.testing.assert_allclose(1 - abar, scale * np.linspace(lo, hi, 7), rtol=1e-9)
    if kind == "linear" and not fixed:
        np.testing.assert_allclose(betas, scale * np.linspace(lo, hi, 7))


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ReclensError, match="schedule"):
        diffusion_schedule(5, "quadratic")
    with pytest.raises(ReclensError, match="noise"):
        diffusion_schedule(5, "linear-var", 0.0)
    with pytest.raises(ReclensError, match="step"):
        diffusion_schedule(0)


def test_posterior_matches_the_gaussian_product_on_a_tiny_case() -> None:
    model = DiffRec(4, steps=3, noise_scale=1.0, noise_min=0.1, noise_max=0.5, beta_fixed=False)
    s = model.schedule
    x0 = torch.tensor([[1.0, 0.0, 0.5, -0.2]])
    x_t = torch.tensor([[0.3, -1.2, 0.8, 0.1]])
    for t in (1, 2):
        beta, abar, abar_prev = s["betas"][t], s["alphas_cumprod"][t], s["alphas_cumprod_prev"][t]
        # q(x_{t-1} | x0) = N(sqrt(abar_prev) x0, 1 - abar_prev), q(x_t | x_{t-1}) =
        # N(sqrt(1 - beta) x_{t-1}, beta): the posterior is their normalised product.
        precision = 1 / (1 - abar_prev) + (1 - beta) / beta
        var = 1 / precision
        mean = var * (
            np.sqrt(abar_prev) * x0.double().numpy() / (1 - abar_prev)
            + np.sqrt(1 - beta) * x_t.double().numpy() / beta
        )
        assert s["posterior_variance"][t] == pytest.approx(var, rel=1e-10)
        assert abar == pytest.approx(np.prod(1 - s["betas"][: t + 1]))
        got = model.q_posterior_mean(x0, x_t, torch.tensor([t])).double().numpy()
        np.testing.assert_allclose(got, mean, rtol=1e-5, atol=1e-6)
    # t = 0: x_{-1} is x0 itself (coefficient 1 on x0_hat, 0 on x_t, no variance)
    got = model.q_posterior_mean(x0, x_t, torch.tensor([0]))
    torch.testing.assert_close(got, x0)
    assert s["posterior_variance"][0] == 0.0


def test_forward_noising_has_the_closed_form_moments() -> None:
    model = DiffRec(3, steps=4, noise_scale=1.0, noise_min=0.1, noise_max=0.6)
    x0 = torch.tensor([[1.0, 0.0, 1.0]]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    t = torch.full((20000,), 3)
    x_t = model.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
    abar = model.schedule["alphas_cumprod"][3]
    np.testing.assert_allclose(x_t.mean(0).numpy(), np.sqrt(abar) * x0[0].numpy(), atol=0.02)
    np.testing.assert_allclose(x_t.var(0).numpy(), np.full(3, 1 - abar), rtol=0.05)


def test_shapes_gradient_and_determinism() -> None:
    torch.manual_seed(0)
    model = DiffRec(30, dims=[16]).eval()
    x = _histories(5, 30).requires_grad_(True)
    scores = model(x)
    assert scores.shape == (5, 30)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, model(x))  # eval mode: deterministic
    scores[:, 3].sum().backward()
    assert x.grad is not None and x.grad.shape == (5, 30)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert model.item_embeddings().shape == (30, 16)
    assert model.user_embeddings(x.detach()).shape == (5, 16)
    assert model.link == "identity"


def test_score_is_the_last_x0_prediction() -> None:
    torch.manual_seed(1)
    model = DiffRec(12, dims=[8], steps=4).eval()
    x = _histories(3, 12)
    steps = list(model.reverse(x))
    assert [s.t for s in steps] == [3, 2, 1, 0]
    torch.testing.assert_close(model(x), steps[-1].x0)
    torch.testing.assert_close(steps[0].x_t, x)  # sampling_steps 0: no forward noise
    for prev, nxt in zip(steps, steps[1:], strict=False):
        torch.testing.assert_close(nxt.x_t, prev.mean)


def test_noised_inference_depends_on_the_seed() -> None:
    torch.manual_seed(2)
    model = DiffRec(12, dims=[8], noise_scale=1.0, noise_min=0.1, noise_max=0.3).eval()
    x = _histories(2, 12)

    def last(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return list(model.reverse(x, noise_steps=3, generator=gen))[-1].x0

    torch.testing.assert_close(last(0), last(0))
    assert not torch.allclose(last(0), last(1))


def test_loss_is_finite_and_trains_every_parameter() -> None:
    torch.manual_seed(0)
    model = DiffRec(20, dims=[8]).train()
    loss = model.loss(_histories(6, 20), _ctx(6))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_loss_history_is_a_fifo_per_step_and_switches_to_importance_sampling() -> None:
    model = DiffRec(5, dims=[4], steps=3, history_num_per_term=4)
    t = torch.tensor([0, 1, 0, 2, 0, 0, 0, 1])
    losses = torch.arange(1.0, 9.0)
    model.update_loss_history(t, losses)
    # reference: append one by one, keep the last 4 per step
    ref: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for step, value in zip(t.tolist(), losses.tolist(), strict=True):
        ref[step] = (ref[step] + [value])[-4:]
    for step, values in ref.items():
        assert int(model.Lt_count[step]) == len(values)
        assert model.Lt_history[step, : len(values)].tolist() == values
    # not every step full yet: uniform sampling, weights 1
    _, pt = model.sample_timesteps(64, torch.Generator().manual_seed(0))
    assert torch.all(pt == 1)
    model.update_loss_history(torch.tensor([1, 1, 2, 2, 2]), torch.tensor([9.0, 9, 1, 1, 1]))
    assert bool((model.Lt_count == 4).all())
    t_s, pt = model.sample_timesteps(4000, torch.Generator().manual_seed(0))
    counts = torch.bincount(t_s, minlength=3).float() / 4000
    rms = torch.sqrt((model.Lt_history**2).mean(-1))
    expected = rms / rms.sum() * 0.999 + 0.001 / 3
    torch.testing.assert_close(counts, expected.float(), atol=0.03, rtol=0)
    torch.testing.assert_close(pt, expected[t_s].float() * 3)


def test_hparams_and_defaults() -> None:
    with pytest.raises(ReclensError, match="unknown hyper-parameter of model diffrec"):
        registry.create("diffrec", 10, layers=[3])
    with pytest.raises(ReclensError, match="sampling_steps"):
        DiffRec(10, steps=3, sampling_steps=4)
    assert set(DiffRec.default_train) <= set(TrainConfig.names())
    TrainConfig(**DiffRec.default_train)
    model = DiffRec(10)
    assert model.hparams == DiffRec.hyper_parameters()
    # a rebuilt model with the saved state scores identically
    other = DiffRec(10, **model.hparams)
    other.load_state_dict(model.state_dict())
    x = _histories(2, 10)
    torch.testing.assert_close(model.eval()(x), other.eval()(x))


@pytest.mark.slow
def test_training_on_synthetic_data_beats_the_untrained_model() -> None:
    ds = generate(n_users=200, n_items=120, n_interactions=4000, seed=1)
    parts = split(ds, "random", seed=0)
    torch.manual_seed(0)
    model = DiffRec(ds.n_items, dims=[64])
    before = evaluate(model.eval(), parts, "test").means["ndcg@10"]
    config = TrainConfig(**{**DiffRec.default_train, "epochs": 15, "patience": 0})
    result = fit(model, parts, config)
    after = evaluate(model, parts, "test").means["ndcg@10"]
    assert result.epochs_run == 15
    assert after > before + 0.05, (before, after)
