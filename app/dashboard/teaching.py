"""The 2-D teaching diffusion of the Diffusion tab: trained toy models shared by all sessions.

A model is trained once per shape and settings: kept in memory (an LRU shared by the
sessions) and saved as safetensors under ``$RECLENS_HOME/toy-models`` (the file name is a hash
of the training points and settings), so a restarted server loads it instead of training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.dashboard.cache import LRU
from data.errors import ReclensError
from data.paths import reclens_home
from engine.toy_diffusion import TOY_FORMAT, ToyDiffusion, make_shape

log = logging.getLogger(__name__)

TOY_ITERS = 800
"""Training iterations of the teaching diffusion (about 3 s on one free CPU thread)."""
TOY_TRAIN_STEPS = 100
"""Diffusion steps T the teaching model is trained with; samplers stride over them."""
TOY_SAMPLING_STEPS = 50
"""Default sampling steps of the page (DDIM and strided DDPM both land crisply with 50)."""
TOY_PARTICLES = 400
"""Particles the page samples."""
ITEM_MAP = "item map"
"""The shape name that diffuses onto a run's item map instead of a drawn shape."""


class TeachingDiffusion:
    """Toy DDPMs on the offered shapes (or a run's item map), and their sampled frames.

    ``item_points(run_id) -> [n, 2]`` gives a run's item map points; trained models are saved
    in ``folder`` (default ``$RECLENS_HOME/toy-models``). A model is trained by one thread at a
    time: another asking for it meanwhile waits for that training instead of starting its own.
    """

    def __init__(
        self, item_points: Callable[[str], np.ndarray], folder: str | Path | None = None
    ) -> None:
        self.item_points = item_points
        self.folder = Path(folder) if folder is not None else reclens_home() / "toy-models"
        self._models: LRU[ToyDiffusion] = LRU(16)
        self._frames: LRU[np.ndarray] = LRU(64)
        self._ready: set[tuple[str, ...]] = set()
        self._progress: dict[tuple[str, ...], int] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    def model(self, shape: str, schedule: str, run_id: str = "") -> ToyDiffusion:
        """The trained teaching model of ``shape`` (``item map``: of the run's item map),
        from memory, from its file, or trained now (see :meth:`progress`)."""
        key = self._key(shape, schedule, run_id)

        def make() -> ToyDiffusion:
            points = self.training_points(shape, run_id)
            path = self.path(points, schedule)
            if path.is_file():
                try:
                    return ToyDiffusion.load(path)
                except ReclensError as err:
                    log.warning("retraining the toy model: %s", err)
            model = ToyDiffusion.train(
                points, n_steps=TOY_TRAIN_STEPS, schedule=schedule, iters=TOY_ITERS,
                callback=lambda it, _loss: self._progress.__setitem__(key, it),
            )  # fmt: skip
            self._save(model, path)
            return model

        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        try:
            with lock:
                model = self._models.get(key, make)
        finally:
            self._progress.pop(key, None)
        self._ready.add(key)
        return model

    def progress(self, shape: str, schedule: str, run_id: str = "") -> int:
        """Iterations done (of :data:`TOY_ITERS`) by the training of this model now running;
        0 when none runs."""
        return self._progress.get(self._key(shape, schedule, run_id), 0)

    def is_ready(self, shape: str, schedule: str, run_id: str = "") -> bool:
        """Whether :meth:`model` returns without training (in memory or saved)."""
        if self._key(shape, schedule, run_id) in self._ready:
            return True
        if shape == ITEM_MAP:
            return False  # telling needs the run's map: leave it to the training path
        return self.path(self.training_points(shape), schedule).is_file()

    def frames(
        self,
        shape: str,
        schedule: str,
        sampler: str,
        n_steps: int,
        run_id: str = "",
        n_particles: int = TOY_PARTICLES,
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

    def training_points(self, shape: str, run_id: str = "") -> np.ndarray:
        """The points [n, 2] a model of ``shape`` is trained on (2000 for a drawn shape)."""
        if shape == ITEM_MAP:
            return np.asarray(self.item_points(run_id), dtype=np.float64)
        return make_shape(shape)

    def path(self, points: np.ndarray, schedule: str) -> Path:
        """The file of the model trained on ``points`` with ``schedule`` and the page's settings."""
        settings = {"format": TOY_FORMAT, "schedule": schedule, "iters": TOY_ITERS,
                    "steps": TOY_TRAIN_STEPS}  # fmt: skip
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        digest.update(np.ascontiguousarray(points, dtype=np.float64).tobytes())
        return self.folder / f"toy-{digest.hexdigest()[:24]}.safetensors"

    def _key(self, shape: str, schedule: str, run_id: str) -> tuple[str, ...]:
        return (shape, schedule, run_id if shape == ITEM_MAP else "", str(TOY_ITERS))

    def _save(self, model: ToyDiffusion, path: Path) -> None:
        """Save ``model`` (written to a temporary file, then renamed); a folder that cannot be
        written only costs the next server a retraining."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            model.save(temporary)
            os.replace(temporary, path)
        except OSError as err:
            log.warning("the toy model was not saved: %s", err)
            temporary.unlink(missing_ok=True)
