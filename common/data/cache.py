"""Procedural datasets rendered once and kept in memory (``Materialized``), in worker processes."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


def _as_stored(batch: list[dict]) -> list[tuple[dict, dict]]:
    """Items as Materialized keeps them, floating-point images in float16, with their tensors as numpy arrays:
    from a worker, arrays travel pickled in the batch, where tensors would each take a shared-memory file
    (a file descriptor each while kept, and slower to set up than rendering an image)."""
    out = []
    for item in batch:
        arrays = {k: (v.half() if k == "image" and v.is_floating_point() else v).numpy()
                  for k, v in item.items() if torch.is_tensor(v)}
        out.append(({k: v for k, v in item.items() if k not in arrays}, arrays))
    return out


class Materialized(Dataset):
    """Render a procedural dataset once and keep it in memory, so epochs don't re-render it.

    Images are kept in float16 (half the memory: 4,800 images at 160 px take 250 MB instead of 490 MB; the
    step of 5e-4 near 1.0 is far below the phantoms' film grain) and handed out as float32.

    ``workers`` > 0 renders in that many DataLoader worker processes, in chunks, in order: the items are the
    same as rendered in this process (each phantom item depends only on its seed and index). The bone phantom's
    4,800 demo images at 160 px took 23.6 s in one process on this project's 2-core CPU and 11.9 s in two
    (benchmarks/materialize_speed.py). The default uses
    every CPU core (at most 8) for sets of ``PARALLEL_FROM`` items or more, one process for smaller sets and in
    a daemonic process (which may not start workers)."""

    PARALLEL_FROM = 512
    CHUNK = 32

    @classmethod
    def default_workers(cls, n: int) -> int:
        """Worker processes for ``n`` items: from PARALLEL_FROM items, every CPU core (at most 8) shared among the
        processes that torchrun started on this machine (each renders its own copy), else none."""
        import multiprocessing
        import os

        if n < cls.PARALLEL_FROM or multiprocessing.current_process().daemon:
            return 0
        cores = min((os.cpu_count() or 1) // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1), 8)
        return cores if cores > 1 else 0

    def __init__(self, dataset: Dataset, workers: int | None = None):
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        workers = self.default_workers(len(dataset)) if workers is None else workers
        self.base = dataset
        self.items = []
        loader = DataLoader(dataset, batch_size=self.CHUNK, shuffle=False, num_workers=workers,
                            collate_fn=_as_stored)
        with tqdm(total=len(dataset), desc="rendering", leave=False) as bar:
            for chunk in loader:
                for rest, arrays in chunk:
                    self.items.append({**rest, **{k: torch.from_numpy(a) for k, a in arrays.items()}})
                bar.update(len(chunk))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        return {**item, "image": item["image"].float()}

