"""A tiny dataset whose user ids, titles and genres are markup payloads, and a run trained on it
(shared by the security tests and their browser tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAYLOAD = "<img src=x onerror=alert(1)>"
TITLE = "<script>alert(2)</script><b>Bold</b> [x](javascript:alert(3))"
GENRE = "<i onmouseover=alert(4)>genre</i>"
MATH_LINK = (
    "$$\\href{javascript:alert(5)}{TeX}$$ at https://evil.example/x, //evil/y or www.evil.example"
)
"""Text that MathJax would typeset (a TeX link) and that a linkifier would turn into links."""


def write_markup_dataset(folder: Path) -> tuple[Path, Path]:
    """A CSV dataset (60 users, 40 items) whose first user id, first titles and a genre are
    markup: ``interactions.csv`` and ``items.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    users = [PAYLOAD] + [f"u{k}" for k in range(1, 60)]
    rows = ["user,item,rating,timestamp"]
    for u, user in enumerate(users):
        for item in rng.choice(40, size=12, replace=False):
            rows.append(f"{user},{int(item)},{1 + (u + int(item)) % 5},{1000 + u * 40 + int(item)}")
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    items = ["item,title,genres"]
    for i in range(40):
        title = TITLE if i < 20 else f"Film {i}"
        items.append(f'{i},"{title}",{GENRE if i % 2 else "Drama"}')
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    return folder / "interactions.csv", folder / "items.csv"


def build_markup_runs(root: Path) -> Path:
    """An ease run on the markup dataset, in ``root/runs``."""
    from engine.pipeline import train_run

    runs = root / "runs"
    if not (runs / ".ready").exists():
        inter, items = write_markup_dataset(root / "markup-data")
        train_run(
            str(inter), "ease", device="cpu", out=runs, load_options={"items_path": str(items)}
        )
        (runs / ".ready").write_text("ok")
    return runs
