"""A delivery backend for the scale-out test: the real outbox, a little slower, noting which cluster sent."""

from __future__ import annotations

import os
import time

from notifications.channels import OutboxBackend


class SlowOutboxBackend(OutboxBackend):
    def send(self, message):
        time.sleep(float(os.environ.get("SLOW_BACKEND_SECONDS", "0.05")))
        result = super().send(message)
        log_path = os.environ.get("SLOW_BACKEND_LOG")
        if log_path:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(f"{os.environ.get('CLUSTER_LABEL', '?')} {message.idempotency_key}\n")
        return result
