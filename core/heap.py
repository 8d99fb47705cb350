"""The garbage collector during a daily job: collect cycles rarely while a batch builds tens of thousands of
short-lived objects.

CPython collects its youngest generation every 700 new container objects and, every hundred of those, walks
every object the process holds. A daily step builds a model instance (a few dicts each) per row of a batch of
thousands, so it collected all the time, each time walking the whole loaded project: about a tenth of the run's
Python time. ``fewer_collections`` moves what is alive at the start (modules, settings, caches) out of the
collector's walks (``gc.freeze``) and collects the young generation every 50,000 objects; on leaving it puts the
thresholds back and the frozen objects under the collector again. Reference counting frees nearly everything a
step builds, with or without it; only cycles wait a little longer.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (50_000, 20, 100)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the block with the collector's thresholds raised and the objects alive at its start frozen."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
