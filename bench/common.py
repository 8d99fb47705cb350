"""Shared plumbing of the benchmarks: a database of their own, timers, floors and the ratio report.

Each figure is compared with a floor measured in the same run on the same database (for example a raw
``bulk_create`` of the same number of rows), because these machines are noisy: ratios travel, seconds do not.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SQLITE = ROOT / "var" / "bench.sqlite3"


def parse_args(description: str, default_rows: int, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--rows", type=int, default=default_rows, help=f"size of the run (default {default_rows:,})"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="database to fill (default: a SQLite file under var/; e.g. postgres://postgres@127.0.0.1:5432/bench)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="reuse the generated book if it has the same size"
    )
    if extra:
        extra(parser)
    return parser.parse_args()


def setup_django(database_url: str) -> None:
    """Point Django at the benchmark's own database (never the product's) and migrate it."""
    url = database_url or f"sqlite:///{DEFAULT_SQLITE}"
    if url.startswith("postgres"):
        ensure_postgres_database(url)
    else:
        DEFAULT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
    os.environ["DATABASE_URL"] = url
    # Each benchmark database has its own audit chain, so it needs its own anchor file: named after the
    # database, so that two benches on two databases never anchor each other's chain.
    tag = anchor_tag(url)
    os.environ["AUDIT_ANCHOR_PATH"] = str(ROOT / "var" / f"bench-audit-anchor-{tag}.jsonl")
    os.environ["EXPORT_ROOT"] = str(ROOT / "var" / "bench" / "exports")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def anchor_tag(url: str) -> str:
    """``postgres-<database>`` or ``sqlite-<file stem>``: the part of the anchor file's name that tells whose it is."""
    from urllib.parse import urlparse

    parts = urlparse(url)
    if url.startswith("postgres"):
        return f"postgres-{parts.path.lstrip('/') or 'postgres'}"
    return f"sqlite-{Path(parts.path).stem or 'bench'}"


def ensure_postgres_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def vendor() -> str:
    from django.db import connection

    return connection.vendor


def peak_rss_mb(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024  # kilobytes on Linux


@contextmanager
def timed(label: str, store: dict):
    start = time.perf_counter()
    yield
    store[label] = time.perf_counter() - start


@dataclass
class Report:
    title: str
    lines: list[str] = field(default_factory=list)
    failed: bool = False

    def ratio(
        self,
        name: str,
        seconds: float,
        floor_name: str,
        floor_seconds: float,
        *,
        at_most: float | None = None,
        at_least_rate: float | None = None,
        rows: int | None = None,
    ) -> None:
        """``at_most``: the figure may take at most N times the floor; ``at_least_rate``: its rate must reach N x."""
        if at_most is not None:
            ratio = seconds / floor_seconds if floor_seconds else float("inf")
            ok = ratio <= at_most
            verdict = f"{ratio:.2f}x the floor (limit {at_most}x) {'OK' if ok else 'OVER'}"
        else:
            ratio = floor_seconds / seconds if seconds else float("inf")
            ok = ratio >= (at_least_rate or 0)
            verdict = f"{ratio:.2f}x the floor's rate (needs >= {at_least_rate}x) {'OK' if ok else 'UNDER'}"
        per = (
            f" ({rows / seconds:,.0f} rows/s vs {rows / floor_seconds:,.0f} rows/s)"
            if rows and seconds and floor_seconds
            else ""
        )
        self.lines.append(f"{name}: {seconds:.2f}s; floor {floor_name}: {floor_seconds:.2f}s; {verdict}{per}")
        self.failed |= not ok

    def note(self, text: str) -> None:
        self.lines.append(text)

    def print(self) -> None:
        print()
        print(f"## {self.title}")
        print(
            f"database: {vendor()}; python {platform.python_version()}; {os.cpu_count()} cores; {platform.machine()}"
        )
        for line in self.lines:
            print(f"- {line}")
        print()
