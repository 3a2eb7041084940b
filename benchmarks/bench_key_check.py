"""How long checking an API key takes, by what is wrong with it: whether a refusal's time says that
its key id exists. Each the median of ``--calls`` calls of server.auth.verify_api_key on one
connection to a migrated database (a warm-up first), over ``--rounds`` rounds:

* an id no key has; a known id with a wrong secret; a revoked key; the valid key itself.

The baseline is the known id with a wrong secret, in the same round: an unknown id's time against
it (1.00x: a refusal's time does not say whether its key id exists; 0.9x before every secret was
hashed).

    python -m benchmarks.bench_key_check
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from psycopg.rows import dict_row

from server.auth import create_api_key, verify_api_key
from tests.services import admin_url, migrated_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with migrated_database(admin_url()) as url, psycopg.connect(url, autocommit=True) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]  # the server's rows (server.db)
        key = create_api_key(conn, "desk", ["reader"])
        revoked = create_api_key(conn, "gone", ["reader"])
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'gone'")
        key_id, _, secret = key.partition(".")
        cases = {
            "unknown id": f"aqk_000000000000.{secret}",
            "known id, wrong secret": f"{key_id}.{'x' * len(secret)}",
            "revoked": revoked,
            "valid": key,
        }
        for _ in range(500):
            for text in cases.values():
                verify_api_key(conn, text)
        for _ in range(args.rounds):
            medians = {}
            for name, text in cases.items():
                times = []
                for _ in range(args.calls):
                    started = time.perf_counter_ns()
                    verify_api_key(conn, text)
                    times.append(time.perf_counter_ns() - started)
                medians[name] = statistics.median(times) / 1000
            print(", ".join(f"{name} {us:.1f} µs" for name, us in medians.items()))
            ratio = medians["unknown id"] / medians["known id, wrong secret"]
            print(f"unknown id against the baseline (known id, wrong secret): {ratio:.2f}x its time")


if __name__ == "__main__":
    main()
