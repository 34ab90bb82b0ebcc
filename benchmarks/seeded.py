"""Running one job per seed, in worker processes or in this one, with progress on stderr."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor


def map_seeds(job, seeds, jobs: int = 1, chunksize: int = 4, every: int = 100) -> list:
    """``[job(s) for s in seeds]``, in order, on ``jobs`` worker processes when ``jobs > 1``; prints
    ``... k/n`` to stderr every ``every`` results."""
    seeds = list(seeds)
    rows = []

    def progress(k):
        if k % every == 0:
            print(f"... {k}/{len(seeds)}", file=sys.stderr, flush=True)

    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            for k, r in enumerate(pool.map(job, seeds, chunksize=chunksize), 1):
                rows.append(r)
                progress(k)
    else:
        for k, s in enumerate(seeds, 1):
            rows.append(job(s))
            progress(k)
    return rows
