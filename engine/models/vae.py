"""Mult-VAE and Mult-DAE: variational and denoising autoencoders for collaborative filtering.

Liang, Krishnan, Hoffman and Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018. A history ``x`` [batch, n_items] is L2-normalised, dropped out (p = 0.5, training
only) and encoded by an MLP ``n_items -> 600 -> 200`` with tanh; the decoder
``200 -> 600 -> n_items`` (tanh between) gives logits over items, read through a softmax:

- Mult-VAE: the encoder outputs the mean and log-variance of q(z | x) [batch, 200]; the loss
  is the multinomial negative log-likelihood ``-sum_i x_i log softmax(f(z))_i`` plus
  ``beta * KL(q(z | x) || N(0, I))``, with ``beta`` annealed linearly from 0 to
  ``anneal_cap`` over ``total_anneal_steps`` optimiser steps; at evaluation z is the mean.
- Mult-DAE: the encoder outputs z directly and the loss is the multinomial likelihood alone
  (its regularisation is the input dropout, plus weight decay if set).

Defaults were chosen on the validation NDCG@10 of MovieLens 100K (random 8:1:1 splits): the
paper's cap of 0.2 was picked on ML-20M; on this small dataset a cap of 0.5 reached within
about 25 epochs (200 steps) validated best among 0.05, 0.2, 0.5 and 1.0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data.errors import ReclensError
from engine.contract import LossContext, Recommender

NORM_EPS = 1e-12  # F.normalize's default eps


class MultAutoencoder(Recommender):
    """The network Mult-VAE and Mult-DAE share; ``user_embeddings`` is the code [batch, latent].

    Subclasses set ``variational``, implement ``loss`` and pass their own hyper-parameters
    (beyond ``hidden``, ``latent`` and ``dropout``) on as ``hparams``.
    """

    link = "softmax"
    trainable = True
    variational: ClassVar[bool]

    def __init__(
        self, n_items: int, hidden: int, latent: int, dropout: float, **hparams: Any
    ) -> None:
        super().__init__(n_items, hidden=hidden, latent=latent, dropout=dropout, **hparams)
        if not 0.0 <= float(dropout) < 1.0:
            raise ReclensError(f"{self.name}: dropout must be in [0, 1), got {dropout}")
        self.latent, self.dropout = int(latent), float(dropout)
        out = 2 * latent if self.variational else latent  # VAE: mean and log-variance
        self.encoder = nn.Sequential(nn.Linear(n_items, hidden), nn.Tanh(), nn.Linear(hidden, out))
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, n_items)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and N(0, 0.001) biases, as the paper's code."""
        for layer in (*self.encoder, *self.decoder):
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.normal_(layer.bias, std=0.001)

    # -- scoring ---------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Posterior mean and log-variance [batch, latent] (log-variance None for the DAE).

        ``x`` [batch, n_items] is L2-normalised, then dropped out in training mode.
        """
        h = F.normalize(x, dim=1)
        if self.training and self.dropout > 0:
            h = history_dropout(h, self.dropout)
        out = self.encoder(h)
        if not self.variational:
            return out, None
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Item logits [batch, n_items] from latent codes ``z`` [batch, latent]."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [batch, n_items] decoded from the posterior mean (no sampling)."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    def first_layer(self) -> Tensor:
        """The encoder's first weight, transposed [n_items, hidden]: in eval mode the encoder
        reads ``x`` through ``x W`` and its L2 norm (the square root of the second moment)."""
        return self.encoder[0].weight.T

    def forward_from_first(self, h: Tensor, moments: Tensor, items: Tensor | None = None) -> Tensor:
        """Logits [batch, n_items] (or [batch, m] of ``items``) from ``h = x W`` [batch, hidden]
        and the moments [batch, 2] of ``x`` (eval mode: no dropout)."""
        norm = moments[:, 1:].clamp_min(NORM_EPS**2).sqrt()  # F.normalize's max(|x|, eps)
        mean = self.encoder[2]  # the posterior mean only: its first ``latent`` outputs
        z = F.linear(
            torch.tanh(h / norm + self.encoder[0].bias),
            mean.weight[: self.latent],
            mean.bias[: self.latent],
        )
        if items is None:
            return self.decode(z)
        last = self.decoder[-1]
        return F.linear(self.decoder[1](self.decoder[0](z)), last.weight[items], last.bias[items])

    def user_embeddings(self, x: Tensor) -> Tensor:
        """Posterior mean [batch, latent] of histories ``x`` [batch, n_items]."""
        return self.encode(x)[0]

    def item_embeddings(self) -> Tensor:
        """Rows of the decoder's output weight [n_items, hidden]: the items' factors."""
        return self.decoder[-1].weight


class MultVAE(MultAutoencoder):
    """Mult-VAE: a Gaussian code, the KL weight annealed to ``anneal_cap``."""

    name = "multvae"
    variational: ClassVar[bool] = True
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 60,
        "batch_size": 128,
        "lr": 2e-3,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "patience": 5,
        "eval_every": 2,
    }

    def __init__(
        self,
        n_items: int,
        hidden: int = 600,
        latent: int = 200,
        dropout: float = 0.5,
        anneal_cap: float = 0.5,
        total_anneal_steps: int = 200,
    ) -> None:
        super().__init__(
            n_items,
            hidden,
            latent,
            dropout,
            anneal_cap=anneal_cap,
            total_anneal_steps=total_anneal_steps,
        )
        self.anneal_cap, self.total_anneal_steps = float(anneal_cap), int(total_anneal_steps)

    def beta(self, step: int) -> float:
        """KL weight after ``step`` optimiser steps: linear from 0 to ``anneal_cap``."""
        if self.total_anneal_steps <= 0:
            return self.anneal_cap
        return self.anneal_cap * min(1.0, step / self.total_anneal_steps)

    def loss(self, x: Tensor, ctx: LossContext) -> Tensor:
        """Multinomial NLL of a sampled code plus the annealed KL, averaged over the batch."""
        mu, logvar = self.encode(x)
        assert logvar is not None  # variational
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(std.shape, generator=ctx.generator, device=std.device)
        z = mu + eps * std  # reparameterisation
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
        return multinomial_nll(self.decode(z), x) + self.beta(ctx.step) * kl


class MultDAE(MultAutoencoder):
    """Mult-DAE: the same network with a deterministic code [batch, latent]."""

    name = "multdae"
    variational: ClassVar[bool] = False
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 60,
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "patience": 2,
        "eval_every": 2,
    }

    def __init__(
        self, n_items: int, hidden: int = 600, latent: int = 200, dropout: float = 0.5
    ) -> None:
        super().__init__(n_items, hidden, latent, dropout)

    def loss(self, x: Tensor, ctx: LossContext) -> Tensor:
        """Multinomial NLL of the code of the dropped-out history, averaged over the batch."""
        return multinomial_nll(self(x), x)


def multinomial_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-sum_i x_i log softmax(logits)_i`` averaged over the batch; both [batch, n_items]."""
    return -(F.log_softmax(logits, dim=1) * x).sum(dim=1).mean()


def history_dropout(h: Tensor, p: float) -> Tensor:
    """Dropout of ``h`` [batch, n_items] that only draws for its non-zero entries.

    The same distribution as ``F.dropout(h, p)`` (a zero stays zero whether dropped or not),
    but histories are mostly zeros and drawing one random number per non-zero entry instead
    of per cell saves most of the cost. Uses torch's global generator, like ``F.dropout``.
    """
    rows, cols = torch.nonzero(h, as_tuple=True)
    keep = (torch.rand(rows.shape, device=h.device) >= p).to(h.dtype) / (1.0 - p)
    mask = torch.zeros_like(h)
    mask[rows, cols] = keep
    return h * mask
