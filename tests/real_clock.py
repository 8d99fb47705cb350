"""The machine's own clock, for moments handed to other processes.

The suite may run with its clock pinned (``TEST_CLOCK``, see conftest.py), but a ``run_jobs`` or ``qcluster``
started as a subprocess reads the real clock: a moment the test passes to it, or a book it must find due, has to
be of that clock, or ``--now`` is refused as in the future and the clusters find nothing due.
"""

from __future__ import annotations

import datetime as dt

import time_machine


def real_now(tz: dt.tzinfo = dt.UTC) -> dt.datetime:
    if time_machine.escape_hatch.is_travelling():
        return time_machine.escape_hatch.datetime.datetime.now(tz)
    return dt.datetime.now(tz)
