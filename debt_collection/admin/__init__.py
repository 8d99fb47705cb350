"""Collections in the admin, one module per concern: ``cases`` (the ladder on the tier, cases, promises,
agencies, legal), ``call_queue`` (the collector's day, with its ``forms``) and their list ``filters``."""

from . import call_queue, cases  # noqa: F401  (importing them registers their admins)
