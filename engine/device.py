"""Choosing the torch device every model and tensor of a run lives on."""

from __future__ import annotations

import torch

from data.errors import ReclensError


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device named by ``spec``.

    ``"auto"``: the first CUDA device when one is available, else the CPU; ``"cpu"``;
    ``"cuda"`` or ``"cuda:N"``: that GPU, a :class:`ReclensError` when CUDA is unavailable or
    there is no device ``N``; ``"mps"`` on Apple silicon when available.
    """
    text = str(spec).strip().lower()
    if text in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise ReclensError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ReclensError(
                f"device {spec!r} was asked for but CUDA is not available "
                "(this torch build or machine has no GPU); use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ReclensError(
                f"device {spec!r} does not exist: this machine has {count} CUDA device(s)"
            )
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ReclensError(f"device {spec!r} was asked for but MPS is not available")
        return device
    raise ReclensError(f"unsupported device {spec!r}: use auto, cpu, cuda or cuda:N")
