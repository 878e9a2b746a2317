"""The 2-D teaching diffusion of the Diffusion tab: trained toy models shared by all sessions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.dashboard.cache import LRU
from engine.toy_diffusion import ToyDiffusion, make_shape

TOY_ITERS = 800
"""Training iterations of the teaching diffusion (a few seconds on one CPU thread)."""
TOY_TRAIN_STEPS = 100
"""Diffusion steps T the teaching model is trained with; samplers stride over them."""
ITEM_MAP = "item map"
"""The shape name that diffuses onto a run's item map instead of a drawn shape."""


class TeachingDiffusion:
    """Toy DDPMs on the offered shapes (or a run's item map), and their sampled frames.

    ``item_points(run_id) -> [n, 2]`` gives a run's item map points.
    """

    def __init__(self, item_points: Callable[[str], np.ndarray]) -> None:
        self.item_points = item_points
        self._models: LRU[ToyDiffusion] = LRU(16)
        self._frames: LRU[np.ndarray] = LRU(64)

    def model(self, shape: str, schedule: str, run_id: str = "") -> ToyDiffusion:
        """The trained teaching model of ``shape`` (``item map``: of the run's item map)."""
        key = (shape, schedule, run_id if shape == ITEM_MAP else "")

        def make() -> ToyDiffusion:
            points = self.item_points(run_id) if shape == ITEM_MAP else shape
            return ToyDiffusion.train(
                points, n_steps=TOY_TRAIN_STEPS, schedule=schedule, iters=TOY_ITERS
            )

        return self._models.get(key, make)

    def frames(
        self,
        shape: str,
        schedule: str,
        sampler: str,
        n_steps: int,
        run_id: str = "",
        n_particles: int = 400,
        seed: int = 0,
    ) -> np.ndarray:
        """Particle positions [n_steps + 1, n_particles, 2] from noise to samples."""
        model = self.model(shape, schedule, run_id)
        key = (shape, schedule, sampler, int(n_steps), run_id, n_particles, seed)
        return self._frames.get(
            key,
            lambda: np.asarray(
                model.sample(n_particles, sampler=sampler, n_steps=int(n_steps), seed=seed)
            ),
        )

    def target(self, shape: str, run_id: str = "") -> np.ndarray:
        """The points the teaching diffusion learns [n, 2] (for drawing them faintly)."""
        if shape == ITEM_MAP:
            return self.item_points(run_id)
        return np.asarray(make_shape(shape, n=800))
