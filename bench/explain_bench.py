"""SPINRec speed against captum's fairest configuration, on ml-100k models, on the CPU.

For each model (fism, multvae and fism-neumf by default) and each repeat, over the same sampled test
users, prints the median wall time per user of:

1. SPINRec's whole explanation (kappa 16, J 16, path selection included), using the model's
   declared shortcuts (``score_items``, the linear first layer; see :mod:`explainers.base`),
   given the same target as captum (the user's top-1 outside the history, found once before);
2. captum's ``IntegratedGradients`` at its best: all 16 baselines in one ``attribute`` call
   (``n_steps=16``, ``method="riemann_right"``, ``internal_batch_size=16 * 16``: one forward
   and backward pass of 256 rows; same baselines, target and forward function
   ``probability(model(x))``; no path selection);
3. captum called once per baseline (16 calls of 16 rows), the configuration of earlier benches;

with the ratios of 2 and 3 over 1 (targets: at least 1.5x over the batched call on multvae,
at least 10x on fism and fism-neumf). A second set of rows explains the same users several at
a time (``--batch-users``, as ``reclens fidelity`` and the all-users run do): SPINRec's
``explain_batch`` per user, its ratio over row 2 (captum's best call, one user at a time),
and captum given those users' baselines in one ``attribute`` call (per-row targets,
``internal_batch_size`` of all their path points), which is slower per user than row 2, and
whether the batched maps and chosen paths equal the one-at-a-time ones. Correctness is
printed beside them: the largest difference
between captum's attributions and SPINRec's candidate maps, relative to the largest
attribution (target: at most 1e-6), and the share of users whose chosen path differs from
SPINRec run on the bare model (``forward`` only, every shortcut hidden; target: none), with the
largest relative difference between the two SPINRec maps; and, for scale, both SPINRec's and
captum's difference from captum run on a float64 copy of the model (float32's own rounding).

Then, for multvae, the wall time of explaining every test user with SPINRec, batched (target:
under 60 s). Load averages are printed before and after, because the machine may be shared.

Each model is the newest saved run on ml-100k with seed 0 under ``$RECLENS_HOME/runs`` (or
``--run NAME=DIR``), opened with :meth:`engine.session.OpenRun.open`; without one it is trained
through the pipeline.
Run: ``RECLENS_DATA=/work/shared/data .venv/bin/python bench/explain_bench.py``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from data.errors import ReclensError
from engine.contract import Recommender
from engine.pipeline import train_run
from engine.runs import runs_root
from engine.session import OpenRun
from explainers.base import top1_outside
from explainers.spinrec import SpinRec, SpinRecExplanation

DATASET, SEED, KAPPA, STEPS = "ml-100k", 0, 16, 16
MODELS: tuple[str, ...] = ("fism", "multvae", "fism-neumf")
TARGETS: dict[str, float] = {"fism": 10.0, "multvae": 1.5, "fism-neumf": 10.0}


class Bare(nn.Module):
    """A model seen through ``forward`` and its link only: every shortcut hidden."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model
        self.n_items = model.n_items

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def probability(self, scores: Tensor) -> Tensor:
        return self.model.probability(scores)


def open_run(name: str, path: str | None) -> OpenRun:
    """The run of model ``name`` on ml-100k: ``path``, the newest saved one, or a new one."""
    if path is None:
        from app.cli_fidelity import find_run

        found = find_run(runs_root(), DATASET, name, SEED, "random", {})
        if found is None:
            print(f"no {name} run on {DATASET}: training one", file=sys.stderr)
            found = train_run(DATASET, name, seed=SEED, device="cpu").run_dir
        path = str(found)
    return OpenRun.open(path, device="cpu")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall milliseconds of ``fn()`` and its result."""
    start = time.perf_counter()
    out = fn()
    return 1000 * (time.perf_counter() - start), out


def bench_model(
    name: str, opened: OpenRun, n_users: int, repeats: int, batch_users: int | None
) -> dict[str, object]:
    """Time SPINRec and both captum configurations on ``n_users`` test users, ``repeats``
    times, one user at a time and ``batch_users`` at a time."""
    from captum.attr import IntegratedGradients

    model = opened.model.eval()
    train = opened.split.train
    users = opened.split.eval_users("test")
    sample = np.random.default_rng(SEED).choice(
        users, size=min(n_users, users.shape[0]), replace=False
    )
    spin = SpinRec(train, kappa=KAPPA, steps=STEPS)
    spin_batched = SpinRec(train, kappa=KAPPA, steps=STEPS, batch_users=batch_users)
    batch_users = batch_users or SpinRec.default_batch_users(model)
    ig = IntegratedGradients(lambda inp: model.probability(model(inp)))

    def row(u: int) -> Tensor:
        return torch.from_numpy(train[int(u)].toarray()[0])

    def captum_batched(x: Tensor, baselines: Tensor, target: int) -> Tensor:
        attr = ig.attribute(
            x[None].expand(KAPPA, -1),
            baselines=baselines,
            target=target,
            n_steps=STEPS,
            method="riemann_right",
            internal_batch_size=KAPPA * STEPS,
        )
        return (attr * x).detach()

    def captum_loop(x: Tensor, baselines: Tensor, target: int) -> Tensor:
        maps = []
        for b in baselines:
            attr = ig.attribute(
                x[None],
                baselines=b[None],
                target=target,
                n_steps=STEPS,
                method="riemann_right",
                internal_batch_size=STEPS,
            )
            maps.append((attr[0] * x).detach())
        return torch.stack(maps)

    def captum_users(xs: Tensor, baselines: Tensor, targets: list[int]) -> Tensor:
        """Several users' paths in one call: xs [B, n], baselines [B, K, n]."""
        inputs = xs.repeat_interleave(KAPPA, dim=0)
        attr = ig.attribute(
            inputs,
            baselines=baselines.reshape(-1, xs.shape[1]),
            target=[t for t in targets for _ in range(KAPPA)],
            n_steps=STEPS,
            method="riemann_right",
            internal_batch_size=xs.shape[0] * KAPPA * STEPS,
        )
        return (attr * inputs).detach()

    # correctness, once per user: captum's maps, and SPINRec on the bare model; both against
    # captum on a float64 copy of the model (float32's own rounding, for scale)
    bare = Bare(model).eval()  # (a new module is in training mode: eval_mode would restore it)
    model64 = copy.deepcopy(model).double()
    ig64 = IntegratedGradients(lambda inp: model64.probability(model64(inp)))
    cases: list[tuple[Tensor, Tensor, SpinRecExplanation]] = []
    max_rel, max_rel_bare, differ, ours64, captum64 = 0.0, 0.0, 0, 0.0, 0.0
    for u in sample:
        x = row(u)
        exp = spin.explain(model, x, user=int(u))
        ref = spin.explain(bare, x, user=int(u))
        assert isinstance(exp, SpinRecExplanation) and isinstance(ref, SpinRecExplanation)
        baselines = torch.from_numpy(train[exp.baseline_users].toarray())
        maps = captum_batched(x, baselines, exp.target).double().numpy()[:, exp.items]
        scale = max(float(np.abs(maps).max()), 1e-30)
        max_rel = max(max_rel, float(np.abs(maps - exp.candidates).max()) / scale)
        max_rel_bare = max(
            max_rel_bare, float(np.abs(ref.candidates - exp.candidates).max()) / scale
        )
        differ += int(ref.chosen != exp.chosen)
        exact = ig64.attribute(
            x[None].expand(KAPPA, -1).double(),
            baselines=baselines.double(),
            target=exp.target,
            n_steps=STEPS,
            method="riemann_right",
            internal_batch_size=KAPPA * STEPS,
        )
        exact = (exact * x.double()).detach().numpy()[:, exp.items]
        scale64 = max(float(np.abs(exact).max()), 1e-30)
        ours64 = max(ours64, float(np.abs(exp.candidates - exact).max()) / scale64)
        captum64 = max(captum64, float(np.abs(maps - exact).max()) / scale64)
        cases.append((x, baselines, exp))

    x0, b0, e0 = cases[0]  # warm-up of every method
    spin.explain(model, x0, user=int(sample[0]))
    captum_batched(x0, b0, e0.target)
    captum_loop(x0, b0, e0.target)
    xs = torch.stack([x for x, _, _ in cases])
    bases = torch.stack([b for _, b, _ in cases])
    targets = [e.target for _, _, e in cases]
    captum_users(xs[:batch_users], bases[:batch_users], targets[:batch_users])  # warm-up
    ids = sample.tolist()
    together = spin_batched.explain_batch(model, xs, targets, users=ids)
    batch_differ, batch_rel = 0, 0.0  # batched against one at a time: same baselines, maps
    for (_, _, exp), got in zip(cases, together, strict=True):
        assert isinstance(got, SpinRecExplanation)
        batch_differ += int(got.chosen != exp.chosen)
        scale = max(float(np.abs(exp.candidates).max()), 1e-30)
        batch_rel = max(batch_rel, float(np.abs(got.candidates - exp.candidates).max()) / scale)
    rounds, batch_rounds = [], []
    for _ in range(repeats):  # one user at a time, then together, in the same repeat
        ours, batched, loop = [], [], []
        for (x, baselines, exp), u in zip(cases, sample, strict=True):
            ours.append(
                timed(lambda x=x, u=u, t=exp.target: spin.explain(model, x, t, user=int(u)))[0]
            )
            batched.append(timed(lambda x=x, b=baselines, t=exp.target: captum_batched(x, b, t))[0])
            loop.append(timed(lambda x=x, b=baselines, t=exp.target: captum_loop(x, b, t))[0])
        rounds.append(tuple(statistics.median(v) for v in (ours, batched, loop)))
        ours_ms = timed(lambda: spin_batched.explain_batch(model, xs, targets, users=ids))[0]
        theirs_ms = 0.0
        for start in range(0, len(cases), batch_users):
            stop = start + batch_users
            theirs_ms += timed(
                lambda a=start, b=stop: captum_users(xs[a:b], bases[a:b], targets[a:b])
            )[0]
        batch_rounds.append((ours_ms / len(cases), theirs_ms / len(cases)))
    return {
        "rounds": rounds,
        "batch_users": batch_users,
        "batch_rounds": batch_rounds,
        "batch_differ": batch_differ,
        "batch_rel": batch_rel,
        "max_rel": max_rel,
        "max_rel_bare": max_rel_bare,
        "differ": differ,
        "ours64": ours64,
        "captum64": captum64,
        "users": len(cases),
    }


def all_users(opened: OpenRun, batch_users: int | None) -> tuple[int, float]:
    """Every test user explained by SPINRec, batched: (users, wall seconds)."""
    model = opened.model.eval()
    train = opened.split.train
    users = opened.split.eval_users("test")
    spin = SpinRec(train, kappa=KAPPA, steps=STEPS, batch_users=batch_users)
    start = time.perf_counter()
    xs = torch.from_numpy(train[users].toarray())
    explanations = spin.explain_batch(model, xs, top1_outside(model, xs), users=users.tolist())
    return len(explanations), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help="models (fism,multvae,fism-neumf)"
    )
    parser.add_argument("--run", action="append", default=[], help="NAME=DIR: a run folder")
    parser.add_argument("--users", type=int, default=64, help="test users timed (64)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (3)")
    parser.add_argument(
        "--batch-users",
        type=int,
        help="users per batched pass (default: SPINRec's, 32 for fism and fism-neumf, 8 else)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-all-users", action="store_true", help="skip the all-users run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = dict(item.split("=", 1) for item in args.run)
    names = [n for n in args.models.split(",") if n]
    print(f"CPU, {torch.get_num_threads()} torch threads; kappa {KAPPA}, J {STEPS}")
    print("load average before: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    try:
        opened = {n: open_run(n, paths.get(n)) for n in names}
    except ReclensError as err:
        print(f"explain_bench: {err}", file=sys.stderr)
        return 2
    for name in names:
        res = bench_model(name, opened[name], args.users, args.repeats, args.batch_users)
        print(f"{name} ({opened[name].path}), {res['users']} users, median ms per user:")
        for i, (ours, batched, loop) in enumerate(res["rounds"]):  # type: ignore[arg-type]
            print(
                f"  repeat {i + 1}: SPINRec (path selection included) {ours:.1f} ms; "
                f"captum batched {batched:.1f} ms -> {batched / ours:.2f}x "
                f"[target >= {TARGETS.get(name, 1.0):g}x]; captum per baseline {loop:.1f} ms "
                f"-> {loop / ours:.2f}x"
            )
        print(f"  {res['batch_users']} users at a time (in the same repeats), mean ms per user:")
        rows = zip(res["batch_rounds"], res["rounds"], strict=True)  # type: ignore[call-overload]
        for i, ((ours, together), (_, best, _)) in enumerate(rows):
            print(
                f"  repeat {i + 1}: SPINRec explain_batch {ours:.2f} ms; captum's best (one call "
                f"per user, above) {best:.2f} ms -> {best / ours:.2f}x "
                f"[target >= {TARGETS.get(name, 1.0):g}x]; captum given those users in one call "
                f"{together:.2f} ms -> {together / ours:.2f}x"
            )
        print(
            f"  batched against one at a time: chosen path differs for {res['batch_differ']} "
            f"users, max relative map difference {res['batch_rel']:.2e}"
        )
        share = 100.0 * float(res["differ"]) / float(res["users"])  # type: ignore[arg-type]
        print(
            f"  max |captum - SPINRec| / max |captum| = {res['max_rel']:.2e} [target <= 1e-6]; "
            f"chosen path differs from the bare model's for {res['differ']} of {res['users']} "
            f"users ({share:.0f}%) [target 0]; max |SPINRec - bare| / max |captum| = "
            f"{res['max_rel_bare']:.2e}"
        )
        print(
            f"  against float64 (captum on a float64 copy): SPINRec {res['ours64']:.2e}, "
            f"captum float32 {res['captum64']:.2e} (relative to the largest attribution)"
        )
    if "multvae" in opened and not args.no_all_users:
        n, wall_s = all_users(opened["multvae"], args.batch_users)
        print(
            f"multvae: all {n} test users explained with SPINRec in {wall_s:.1f} s "
            f"({1000 * wall_s / max(n, 1):.1f} ms each)  [target < 60 s]"
        )
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
