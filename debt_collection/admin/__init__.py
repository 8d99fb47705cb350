"""Collections in the admin, one module per concern: ``cases`` (the ladder on the tier, cases, promises,
agencies, legal), ``call_queue`` (the collector's day, with its ``forms``), ``call_log`` (every call made) and their list
``filters``."""

from . import call_log, call_queue, cases  # noqa: F401  (importing them registers their admins)
