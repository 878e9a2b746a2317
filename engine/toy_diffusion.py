"""A 2D teaching diffusion: a small DDPM on points, trained in seconds on the CPU.

In the spirit of Diffusion Explorer: pick a shape (two moons, a spiral, a circle, a smiley) or
give any 2D points (e.g. the item map of a run, so the particles flow onto the real items),
train a tiny noise-prediction MLP, then watch particles of pure noise being denoised step by
step with the DDPM (ancestral) or DDIM (deterministic) sampler, with as many steps and the
noise schedule (linear or cosine) you like.

Model (Ho et al. 2020): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` over T steps; the
MLP ``eps_hat(x_t, t)`` (the point, its Fourier features and a projected sinusoidal time
embedding, then residual SiLU blocks) is trained with the squared error to the stable target
(Xu et al. 2023): the posterior mean of eps given ``x_t`` over the batch's points, which has far
less variance than the drawn eps; the trained steps are drawn as ``T * u^2`` (u uniform), so the
low-noise steps that make the shape crisp get most of the training. Sampling walks a strided
subsequence tau_S > ... > tau_1 of the T steps with the generalised DDIM update (Song et al.
2021)::

    x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
    sigma  = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z

``eta = 1`` is DDPM's ancestral sampler (exactly, with all T steps), ``eta = 0`` is DDIM.
Points are standardised (mean, one overall scale) for training and mapped back for output.
A trained model is saved to and loaded from a safetensors file (:meth:`ToyDiffusion.save`).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from data.errors import ReclensError

SHAPES: tuple[str, ...] = ("moons", "spiral", "circle", "smiley")
TOY_SCHEDULES: tuple[str, ...] = ("linear", "cosine")
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim")
Sampler = Literal["ddpm", "ddim"]
TOY_FORMAT = "reclens-toy-diffusion-2"
"""Written into every saved toy model; a file of another format is not loaded."""


# -- shapes ---------------------------------------------------------------------------------------
def make_shape(name: str, n: int = 2000, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """``n`` points [n, 2] on a toy shape (roughly within [-1, 1]^2), with Gaussian jitter."""
    rng = np.random.default_rng(seed)
    if name == "moons":
        half = n // 2
        a = rng.uniform(0, np.pi, n - half)
        b = rng.uniform(0, np.pi, half)
        upper = np.stack([np.cos(a), np.sin(a)], 1)
        lower = np.stack([1 - np.cos(b), 0.5 - np.sin(b)], 1)
        pts = (np.concatenate([upper, lower]) - [0.5, 0.25]) * [0.8, 1.2]
    elif name == "spiral":
        s = np.sqrt(rng.uniform(0.02, 1, n))  # uniform along the area swept
        angle = 3.5 * np.pi * s
        pts = np.stack([s * np.cos(angle), s * np.sin(angle)], 1)
    elif name == "circle":
        a = rng.uniform(0, 2 * np.pi, n)
        pts = np.stack([np.cos(a), np.sin(a)], 1) * 0.9
    elif name == "smiley":
        pts = _smiley(rng, n)
    else:
        raise ReclensError(f"unknown toy shape {name!r}: use one of {', '.join(SHAPES)}")
    pts = pts + rng.normal(scale=noise, size=pts.shape)
    return pts[rng.permutation(n)].astype(np.float64)


def _smiley(rng: np.random.Generator, n: int) -> np.ndarray:
    """A face: outline (50%), two eyes (10% each) and a smile (30%)."""
    counts = rng.multinomial(n, [0.5, 0.1, 0.1, 0.3])
    a = rng.uniform(0, 2 * np.pi, counts[0])
    face = np.stack([np.cos(a), np.sin(a)], 1) * 0.95
    eyes = [
        np.array(c) + rng.normal(scale=0.06, size=(m, 2))
        for c, m in (((-0.35, 0.3), counts[1]), ((0.35, 0.3), counts[2]))
    ]
    b = rng.uniform(1.15 * np.pi, 1.85 * np.pi, counts[3])
    smile = np.stack([0.55 * np.cos(b), 0.55 * np.sin(b) + 0.05], 1)
    return np.concatenate([face, *eyes, smile])


def distance_to(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance [n] from each of ``points`` [n, 2] to its nearest ``reference`` point
    (a k-d tree of the reference: fast and small even for a dense reference sample)."""
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(np.asarray(reference, dtype=np.float64)).query(
        np.asarray(points, dtype=np.float64)
    )
    return np.asarray(distances, dtype=np.float64)


# -- schedule and network -------------------------------------------------------------------------
def toy_schedule(n_steps: int, kind: str = "linear") -> np.ndarray:
    """Betas [n_steps] (float64): ``linear`` (Ho et al., rescaled to 1000 / n_steps so that
    abar_T is as small as with 1000 steps) or ``cosine`` (Nichol & Dhariwal, s = 0.008)."""
    if n_steps < 2:
        raise ReclensError(f"the toy diffusion needs at least 2 steps, got {n_steps}")
    if kind == "linear":
        scale = 1000.0 / n_steps
        return np.linspace(scale * 1e-4, min(scale * 0.02, 0.999), n_steps)
    if kind == "cosine":
        s = np.arange(n_steps + 1) / n_steps
        abar = np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
        return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)
    raise ReclensError(f"unknown schedule {kind!r}: use one of {', '.join(TOY_SCHEDULES)}")


class ToyDenoiser(nn.Module):
    """eps_hat(x_t, t): x [batch, 2], t [batch] (long) -> [batch, 2].

    The input is the point, its Fourier features ``sin(2^k x), cos(2^k x)`` for k < ``n_freqs``
    (they let a small MLP draw thin curves) and a projected sinusoidal embedding of t; a linear
    layer maps them to ``hidden`` units, then ``depth`` residual blocks ``h + W silu(h)``. The
    time embeddings of the ``n_steps`` steps are precomputed (a [n_steps, emb_size] buffer).
    """

    def __init__(
        self, n_steps: int, hidden: int = 128, depth: int = 3, emb_size: int = 32, n_freqs: int = 6
    ) -> None:
        super().__init__()
        self.hidden, self.depth, self.emb_size, self.n_freqs = hidden, depth, emb_size, n_freqs
        half = emb_size // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half) / half)
        args = torch.arange(n_steps).float()[:, None] * freqs[None]
        self.register_buffer("table", torch.cat([torch.cos(args), torch.sin(args)], -1))
        self.register_buffer("octaves", 2.0 ** torch.arange(n_freqs).float())
        self.time_proj = nn.Linear(2 * half, 2 * half)
        self.inp = nn.Linear(2 + 4 * n_freqs + 2 * half, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        angles = (x[:, :, None] * self.octaves).flatten(1)
        h = self.inp(
            torch.cat([x, torch.sin(angles), torch.cos(angles), self.time_proj(self.table[t])], -1)
        )
        for block in self.blocks:
            h = h + block(F.silu(h))
        return self.out(F.silu(h))


# -- the diffusion --------------------------------------------------------------------------------
@dataclass
class ToyDiffusion:
    """A trained 2D DDPM; build one with :meth:`train`.

    ``center`` [2] and ``scale`` map standardised points back (``x * scale + center``);
    ``losses`` holds the training loss of every iteration; ``seconds`` the training time.
    """

    net: ToyDenoiser
    betas: np.ndarray
    schedule: str
    center: np.ndarray
    scale: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_steps(self) -> int:
        """T, the number of diffusion steps it was trained with."""
        return int(self.betas.shape[0])

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """abar_t [T] (float64)."""
        return np.cumprod(1.0 - self.betas)

    @classmethod
    def train(
        cls,
        points: np.ndarray | str,
        *,
        n_steps: int = 100,
        schedule: str = "cosine",
        iters: int = 800,
        batch_size: int = 256,
        lr: float = 1e-2,
        hidden: int = 128,
        depth: int = 3,
        seed: int = 0,
        callback: Callable[[int, float], Any] | None = None,
    ) -> ToyDiffusion:
        """Train on ``points`` [n, 2] (or a shape name from :data:`SHAPES`, 2000 points).

        Adam with a cosine-decayed learning rate, ``iters`` steps of ``batch_size`` points drawn
        with replacement, each noised at a step ``t = floor(T u^2)``; the regression target is
        the stable target (see the module docstring). ``callback(iteration, loss)`` is called
        every 100 iterations and after the last.
        """
        start = time.perf_counter()
        data = make_shape(points, seed=seed) if isinstance(points, str) else np.asarray(points)
        if data.ndim != 2 or data.shape[1] != 2 or len(data) < 2:
            raise ReclensError(f"the toy diffusion needs points [n >= 2, 2], got {data.shape}")
        if not np.isfinite(data).all():
            raise ReclensError("the toy diffusion's points must be finite")
        center = data.mean(0)
        scale = float(data.std()) or 1.0
        x_all = torch.tensor((data - center) / scale, dtype=torch.float32)
        betas = toy_schedule(n_steps, schedule)
        abar = torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)

        with _seeded(seed):
            net = ToyDenoiser(n_steps, hidden=hidden, depth=depth)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters, eta_min=lr * 0.05)
        losses: list[float] = []
        for it in range(iters):
            x0 = x_all[torch.randint(0, len(x_all), (batch_size,), generator=gen)]
            u = torch.rand(batch_size, generator=gen)
            t = (u.square() * n_steps).long().clamp(max=n_steps - 1)
            a = abar[t][:, None]
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)
            loss = F.mse_loss(net(x_t, t), _stable_target(x_t, a, x0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if callback is not None and ((it + 1) % 100 == 0 or it + 1 == iters):
                callback(it + 1, losses[-1])
        net.eval()
        return cls(net, betas, schedule, center, scale, losses, time.perf_counter() - start)

    def save(self, path: str | Path) -> None:
        """Write the model to a safetensors file (weights, schedule, standardisation, losses)."""
        tensors = {f"net.{k}": v.detach().contiguous() for k, v in self.net.state_dict().items()}
        tensors |= {
            "betas": torch.tensor(self.betas),
            "center": torch.tensor(np.asarray(self.center, dtype=np.float64)),
            "losses": torch.tensor(self.losses, dtype=torch.float32),
        }
        net = self.net
        meta = {"hidden": net.hidden, "depth": net.depth, "emb_size": net.emb_size,
                "n_freqs": net.n_freqs, "scale": self.scale, "seconds": self.seconds}  # fmt: skip
        save_file(
            tensors, str(path), metadata={"format": TOY_FORMAT, "schedule": self.schedule,
                                          "settings": json.dumps(meta)},
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> ToyDiffusion:
        """A model written by :meth:`save`; a file that is not one raises :class:`ReclensError`."""
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not iterable)
        except (OSError, SafetensorError) as err:
            raise ReclensError(f"cannot read the toy model {path}: {err}") from err
        if meta.get("format") != TOY_FORMAT:
            raise ReclensError(f"{path} is not a toy model of format {TOY_FORMAT}")
        try:
            settings = json.loads(meta["settings"])
            betas = tensors["betas"].numpy()
            net = ToyDenoiser(
                len(betas), hidden=int(settings["hidden"]), depth=int(settings["depth"]),
                emb_size=int(settings["emb_size"]), n_freqs=int(settings["n_freqs"]),
            )  # fmt: skip
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
            model = cls(
                net, betas, meta["schedule"], tensors["center"].numpy(), float(settings["scale"]),
                tensors["losses"].tolist(), float(settings["seconds"]),
            )  # fmt: skip
        except (KeyError, ValueError, RuntimeError) as err:
            raise ReclensError(f"the toy model {path} is incomplete: {err}") from err
        net.eval()
        return model

    @torch.no_grad()
    def sample(
        self,
        n_particles: int = 500,
        sampler: Sampler = "ddpm",
        n_steps: int | None = None,
        seed: int = 0,
        eta: float | None = None,
        clip: float | None = 4.0,
    ) -> np.ndarray:
        """Particle positions [n_steps + 1, n_particles, 2] from noise (frame 0) to samples.

        ``n_steps`` sampling steps (default T) strided over the T trained steps; ``eta``
        defaults to 1 for ``ddpm`` and 0 for ``ddim``; ``clip`` bounds x0_hat (standardised
        units) to keep few-step sampling stable (None: no clipping).
        """
        if sampler not in SAMPLERS:
            raise ReclensError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        taus = self.timesteps(n_steps)
        eta = (1.0 if sampler == "ddpm" else 0.0) if eta is None else float(eta)
        abar = self.alphas_cumprod
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((n_particles, 2), generator=gen)
        frames = [x.numpy().copy()]
        for i in range(len(taus) - 1, -1, -1):
            t = int(taus[i])
            a_t = float(abar[t])
            a_prev = float(abar[taus[i - 1]]) if i > 0 else 1.0
            eps = self.net(x, torch.full((n_particles,), t, dtype=torch.long))
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
                eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
            sigma = eta * math.sqrt(max((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), 0.0))
            direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            x = math.sqrt(a_prev) * x0 + direction
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=gen)
            frames.append(x.numpy().copy())
        return np.stack(frames) * self.scale + self.center

    def diffuse(self, points: np.ndarray, n_frames: int | None = None, seed: int = 0) -> np.ndarray:
        """The forward process [n_frames + 1, n, 2]: ``points`` (frame 0) noised to abar at
        evenly spaced steps (all T by default), with one fixed noise draw per point."""
        taus = self.timesteps(n_frames)
        x0 = (np.asarray(points, dtype=np.float64) - self.center) / self.scale
        eps = np.random.default_rng(seed).normal(size=x0.shape)
        abar = self.alphas_cumprod[taus]
        frames = np.sqrt(abar)[:, None, None] * x0 + np.sqrt(1 - abar)[:, None, None] * eps
        return np.concatenate([x0[None], frames]) * self.scale + self.center

    def timesteps(self, n_steps: int | None = None) -> np.ndarray:
        """Increasing, distinct trained steps [S] used by an S-step sampler (S <= T)."""
        n = self.n_steps if n_steps is None else int(n_steps)
        if not 1 <= n <= self.n_steps:
            raise ReclensError(f"sampling steps must be within 1..{self.n_steps}, got {n}")
        return np.unique(np.round(np.linspace(0, self.n_steps - 1, n)).astype(np.int64))


def _stable_target(x_t: Tensor, abar: Tensor, x0: Tensor) -> Tensor:
    """E[eps | x_t] [batch, 2] with the batch's points ``x0`` [batch, 2] as the data: each x_t
    (noised from its own x0, at abar [batch, 1]) weighs every point by the Gaussian likelihood
    of having produced it (the stable target field of Xu et al. 2023)."""
    with torch.no_grad():
        root = abar.sqrt()
        var = 1 - abar
        d2 = ((x_t[:, None, :] - root[:, :, None] * x0[None]) ** 2).sum(-1) / (2 * var)
        mean_x0 = torch.softmax(-d2, 1) @ x0
        return (x_t - root * mean_x0) / var.sqrt()


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global CPU generator for the block (weight init), restoring it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
