"""The 2D teaching diffusion: shapes, schedules, training, samplers, forward process."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from data.errors import ReclensError
from engine.toy_diffusion import SHAPES, ToyDiffusion, distance_to, make_shape, toy_schedule


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Train single-threaded: on a busy 2-core machine torch's thread pool makes these tiny
    matrix products 10-20x slower (the library itself leaves the thread count alone)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def moons(one_thread: None) -> ToyDiffusion:
    """A quickly trained (half the default iterations) model of the two moons."""
    return ToyDiffusion.train("moons", iters=1500, seed=0)


@pytest.mark.parametrize("name", SHAPES)
def test_shapes(name: str) -> None:
    pts = make_shape(name, n=500, seed=1)
    assert pts.shape == (500, 2) and np.isfinite(pts).all()
    assert np.abs(pts).max() < 1.5
    np.testing.assert_array_equal(pts, make_shape(name, n=500, seed=1))
    assert not np.array_equal(pts, make_shape(name, n=500, seed=2))


def test_unknown_shape_and_bad_points() -> None:
    with pytest.raises(ReclensError, match="shape"):
        make_shape("square")
    with pytest.raises(ReclensError, match="points"):
        ToyDiffusion.train(np.zeros((10, 3)), iters=1)
    with pytest.raises(ReclensError, match="schedule"):
        toy_schedule(10, "quadratic")


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("n", [10, 100, 1000])
def test_schedules(kind: str, n: int) -> None:
    betas = toy_schedule(n, kind)
    abar = np.cumprod(1 - betas)
    assert betas.shape == (n,) and np.all(betas > 0) and np.all(betas < 1)
    assert np.all(np.diff(abar) < 0)
    assert abar[0] > 0.95 and abar[-1] < 0.01  # from almost data to almost pure noise


def test_distance_to() -> None:
    ref = np.array([[0.0, 0.0], [1.0, 0.0]])
    got = distance_to(np.array([[0.0, 1.0], [1.0, 0.5], [0.5, 0.0]]), ref)
    np.testing.assert_allclose(got, [1.0, 0.5, 0.5])


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 20), ("ddpm", 25)])
def test_samples_land_on_the_shape(moons: ToyDiffusion, sampler: str, steps: int | None) -> None:
    frames = moons.sample(600, sampler, steps, seed=3)
    n_frames = (steps or moons.n_steps) + 1
    assert frames.shape == (n_frames, 600, 2)
    ref = make_shape("moons", 4000, seed=99, noise=0.0)
    start = distance_to(frames[0], ref).mean()
    end = distance_to(frames[-1], ref).mean()
    assert end < 0.4 * start, (start, end)
    # the walk is gradual: the middle frame is in between
    middle = distance_to(frames[n_frames // 2], ref).mean()
    assert end < middle


def test_sampling_is_seeded(moons: ToyDiffusion) -> None:
    a = moons.sample(50, "ddpm", 10, seed=0)
    np.testing.assert_array_equal(a, moons.sample(50, "ddpm", 10, seed=0))
    assert not np.array_equal(a, moons.sample(50, "ddpm", 10, seed=1))
    # DDIM is deterministic given the starting noise: only frame 0 depends on the seed
    b = moons.sample(50, "ddim", 10, seed=0)
    assert np.array_equal(b[0], a[0])
    with pytest.raises(ReclensError, match="sampler"):
        moons.sample(5, "euler")
    with pytest.raises(ReclensError, match="steps"):
        moons.sample(5, "ddim", moons.n_steps + 1)


def test_timesteps(moons: ToyDiffusion) -> None:
    np.testing.assert_array_equal(moons.timesteps(), np.arange(moons.n_steps))
    taus = moons.timesteps(20)
    assert len(taus) == 20 and taus[0] == 0 and taus[-1] == moons.n_steps - 1
    assert np.all(np.diff(taus) > 0)


def test_forward_process(moons: ToyDiffusion) -> None:
    pts = make_shape("moons", 2000, seed=4)
    frames = moons.diffuse(pts, seed=0)
    assert frames.shape == (moons.n_steps + 1, 2000, 2)
    np.testing.assert_allclose(frames[0], pts)
    # the last frame is (almost) the standard normal in data units
    last = (frames[-1] - moons.center) / moons.scale
    np.testing.assert_allclose(last.mean(0), 0, atol=0.1)
    np.testing.assert_allclose(last.std(0), 1, atol=0.1)


def test_given_points_are_learned_in_their_own_units() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[100.0, 50.0], [110.0, 58.0], [95.0, 60.0]])
    pts = centres[rng.integers(0, 3, 900)] + rng.normal(scale=0.4, size=(900, 2))
    model = ToyDiffusion.train(pts, iters=1000, n_steps=80)
    assert model.n_steps == 80 and len(model.losses) == 1000
    final = model.sample(400, "ddpm", 40, seed=0)[-1]
    assert np.median(distance_to(final, centres)) < 1.5
    assert np.abs(final.mean(0) - pts.mean(0)).max() < 2.0
