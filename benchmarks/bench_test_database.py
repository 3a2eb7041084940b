"""How long a test's migrated database takes to make: copied from a migrated template database
(``CREATE DATABASE … TEMPLATE``, what ``tests/conftest.py``'s ``migrated_database_url`` does since
2026-12-07) against the baseline, every migration run into an empty database (what it did before).
Each the median of ``--databases`` databases per way, the two ways alternating, over ``--rounds``
rounds; each database is dropped after (the drop is not timed: both ways pay it).

    python -m benchmarks.bench_test_database
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from collector.migrate import migrate
from tests.services import admin_url, create_database, create_migrated_template, drop_database, drop_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = admin_url()
    started = time.perf_counter()
    template = create_migrated_template(server, "bench")
    print(f"template made in {time.perf_counter() - started:.2f} s (once per pytest worker)")
    try:

        def migrated() -> str:
            url = create_database(server)
            migrate(url)
            return url

        def copied() -> str:
            return create_database(server, template)

        ways: dict[str, Callable[[], str]] = {"migrated": migrated, "copied": copied}
        for _ in range(args.rounds):
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.databases):
                for name, make in ways.items():
                    started = time.perf_counter()
                    url = make()
                    times[name].append(time.perf_counter() - started)
                    drop_database(server, url)
            medians = {name: statistics.median(taken) * 1000 for name, taken in times.items()}
            print(
                f"copied from the template: median {medians['copied']:.0f} ms against {medians['migrated']:.0f} ms "
                f"migrating (the baseline): {medians['migrated'] / medians['copied']:.1f}x faster"
            )
    finally:
        drop_template(server, template)


if __name__ == "__main__":
    main()
