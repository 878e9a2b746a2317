"""The 2D teaching diffusion: shapes, schedules, training, samplers, forward process, the saved
models, and the page's teaching diffusion (accuracy of its final step, cache, progress, aspect)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import holoviews as hv
import numpy as np
import panel as pn
import pytest
import torch
from safetensors.torch import save_file

from app.dashboard import teaching
from app.dashboard.plots.diffusion import particles
from app.dashboard.teaching import ITEM_MAP, TeachingDiffusion
from app.dashboard.views.diffusion import SHAPES as PAGE_SHAPES
from app.dashboard.views.diffusion import DiffusionView
from data.errors import ReclensError
from engine.toy_diffusion import SHAPES, ToyDiffusion, distance_to, make_shape, toy_schedule

DRAWN = tuple(s for s in PAGE_SHAPES if s != ITEM_MAP)
"""The drawn shapes the page offers (the item map depends on a run)."""


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
    """A model of the two moons with the default settings."""
    return ToyDiffusion.train("moons", seed=0)


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
    model = ToyDiffusion.train(pts, iters=600, n_steps=80)
    assert model.n_steps == 80 and len(model.losses) == 600
    final = model.sample(400, "ddpm", 40, seed=0)[-1]
    assert np.median(distance_to(final, centres)) < 1.5
    assert np.abs(final.mean(0) - pts.mean(0)).max() < 2.0


def test_save_and_load(moons: ToyDiffusion, tmp_path: Path) -> None:
    path = tmp_path / "moons.safetensors"
    moons.save(path)
    back = ToyDiffusion.load(path)
    assert back.schedule == moons.schedule and back.scale == moons.scale
    assert back.losses == pytest.approx(moons.losses) and back.seconds == moons.seconds
    np.testing.assert_array_equal(back.betas, moons.betas)
    np.testing.assert_array_equal(back.center, moons.center)
    np.testing.assert_array_equal(back.sample(30, "ddpm", 10), moons.sample(30, "ddpm", 10))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ReclensError, match="cannot read"):
        ToyDiffusion.load(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), {"format": "other"})
    with pytest.raises(ReclensError, match="not a toy model"):
        ToyDiffusion.load(tmp_path / "other.safetensors")


# -- the page's teaching diffusion ----------------------------------------------------------------
def within(frame: np.ndarray, shape: str, tolerance: float = 0.05) -> float:
    """The share of particles of ``frame`` within ``tolerance`` of a dense, noise-free sample of
    ``shape`` (the smiley's eyes are blobs: their sample is one too)."""
    reference = make_shape(shape, 20000, seed=99, noise=0.0)
    return float((distance_to(frame, reference) < tolerance).mean())


def test_the_data_itself_is_within_the_tolerance() -> None:
    """The measure of the accuracy test: the training points themselves score about 99%."""
    for shape in DRAWN:
        assert within(make_shape(shape), shape) > 0.97


@pytest.fixture(scope="module")
def page_teaching(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> TeachingDiffusion:
    """The page's teaching diffusion, saving its models in a temporary folder (shared by the
    accuracy cases: each shape trains once)."""
    return TeachingDiffusion(lambda run: np.zeros((0, 2)), tmp_path_factory.mktemp("toy-models"))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("shape", DRAWN)
def test_final_step_lands_on_the_shape(
    page_teaching: TeachingDiffusion, shape: str, sampler: str
) -> None:
    """With the page's defaults (schedule, steps, particles, seed), through the call the page
    makes, at least 90% of the particles end within 0.05 of the shape (which spans about 2)."""
    defaults = DiffusionView.param
    frames = page_teaching.frames(
        shape, defaults.schedule.default, sampler, defaults.toy_steps.default
    )
    assert frames.shape == (defaults.toy_steps.default + 1, teaching.TOY_PARTICLES, 2)
    assert within(frames[-1], shape) >= 0.90
    assert within(frames[0], shape) < 0.3  # it starts as noise


def test_models_are_kept_and_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(teaching, "TOY_ITERS", 30)
    first = TeachingDiffusion(lambda run: np.zeros((0, 2)), tmp_path)
    assert not first.is_ready("circle", "linear")
    model = first.model("circle", "linear")
    assert len(model.losses) == 30 and first.is_ready("circle", "linear")
    assert first.model("circle", "linear") is model
    assert not first.is_ready("circle", "cosine") and not first.is_ready("spiral", "linear")
    (saved,) = tmp_path.glob("*.safetensors")
    with monkeypatch.context() as no_training:  # a new server loads the saved model
        no_training.setattr(ToyDiffusion, "train", None)
        second = TeachingDiffusion(lambda run: np.zeros((0, 2)), tmp_path)
        assert second.is_ready("circle", "linear")
        assert second.model("circle", "linear").losses == pytest.approx(model.losses)
        np.testing.assert_array_equal(
            second.frames("circle", "linear", "ddim", 10),
            first.frames("circle", "linear", "ddim", 10),
        )
    monkeypatch.setattr(teaching, "TOY_ITERS", 31)  # other settings: another file
    assert not second.is_ready("circle", "linear")
    monkeypatch.setattr(teaching, "TOY_ITERS", 30)
    saved.write_bytes(b"damaged")  # a damaged file is trained again, and saved again
    third = TeachingDiffusion(lambda run: np.zeros((0, 2)), tmp_path)
    retrained = third.model("circle", "linear")
    assert len(retrained.losses) == 30
    assert ToyDiffusion.load(saved).losses == pytest.approx(retrained.losses)


def test_a_model_is_trained_once_when_asked_twice_at_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(teaching, "TOY_ITERS", 40)
    calls: list[str] = []
    train = ToyDiffusion.train

    def counted(*args: object, **kwargs: object) -> ToyDiffusion:
        calls.append("train")
        return train(*args, **kwargs)

    monkeypatch.setattr(ToyDiffusion, "train", counted)
    page = TeachingDiffusion(lambda run: np.zeros((0, 2)), tmp_path)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: page.model("spiral", "linear"), range(2))
    assert first is second and calls == ["train"]
    assert page.progress("spiral", "linear") == 0  # no training running


def test_item_map_models_are_keyed_by_the_points(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(teaching, "TOY_ITERS", 20)
    maps = {"a": make_shape("circle", 300), "b": make_shape("moons", 300)}
    page = TeachingDiffusion(maps.__getitem__, tmp_path)
    assert not page.is_ready(ITEM_MAP, "linear", "a")
    a, b = page.model(ITEM_MAP, "linear", "a"), page.model(ITEM_MAP, "linear", "b")
    assert a is not b and len(list(tmp_path.glob("*.safetensors"))) == 2
    assert page.is_ready(ITEM_MAP, "linear", "a")
    np.testing.assert_allclose(a.center, maps["a"].mean(0))


def test_the_panel_shows_progress_while_training(tmp_path: Path, monkeypatch) -> None:
    from app.dashboard.engine_service import EngineService
    from app.dashboard.state import Selection

    monkeypatch.setattr(teaching, "TOY_ITERS", 400)
    service = EngineService(tmp_path / "runs")
    service.teaching = TeachingDiffusion(lambda run: np.zeros((0, 2)), tmp_path / "toy")
    view = DiffusionView(state=Selection(), service=service, shape="circle", toy_steps=10)
    shown: list[int] = []

    async def collect() -> list[pn.viewable.Viewable]:
        parts = []
        async for part in view.toy_panel():
            parts.append(part)
            for bar in part.select(pn.indicators.Progress):
                assert bar.max == 400
                bar.param.watch(lambda event: shown.append(event.new), "value")
        return parts

    training, body = asyncio.run(collect())
    assert "Training the toy model on" in str(training[0].object)
    assert any(0 < value < 400 for value in shown), shown  # it moved while training
    assert body[0] is view._toy_player and view._toy_player.end == 10
    assert "400 iterations in" in str(body[-1].object)
    (again,) = asyncio.run(collect())  # trained: straight to the particles
    assert again[0] is view._toy_player
    view.shape = ITEM_MAP  # no run selected: a message instead of a traceback
    *_, failed = asyncio.run(collect())
    assert isinstance(failed, pn.pane.Alert)


@pytest.mark.parametrize("extent", [(-2.0, -1.0, 2.0, 1.0), (-1.0, -1.0, 1.0, 1.0)])
def test_teaching_plot_has_equal_units(extent: tuple[float, float, float, float]) -> None:
    """One unit is as long on both axes: the frame's width / height is the x / y span."""
    hv.extension("bokeh")
    pts = make_shape("circle", 100)
    fig = hv.render(particles(pts, pts, "step", extent))
    x_span, y_span = extent[2] - extent[0], extent[3] - extent[1]
    assert fig.frame_width / fig.frame_height == pytest.approx(x_span / y_span, rel=0.01)
