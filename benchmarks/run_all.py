"""Run every benchmark in this folder, one after the other: ``python -m benchmarks.run_all [NAME…]``.

NAME is a module (``bench_ingest``) or its short name (``ingest``); several run in the order given
by their names. Each benchmark parses its own options from ``sys.argv``, so it runs with none here
(its defaults): run one alone (``python -m benchmarks.bench_ingest --help``) to pass options.

Each ``bench_*.py`` module has a ``main()`` that measures aquami beside a baseline in the same run
(a peer library, raw ``COPY``, a naive version) and prints ratios: absolute times on shared 2-core
machines are noise, ratios measured together are not.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback

import benchmarks


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print(f"benchmarks: {', '.join(names)}")
        return 0
    if argv:
        unknown = sorted(set(argv) - set(names) - {n.removeprefix("bench_") for n in names})
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in argv or n.removeprefix("bench_") in argv]
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        saved_argv = sys.argv
        sys.argv = [f"benchmarks.{name}"]  # run_all's own arguments are not the benchmark's options
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except (Exception, SystemExit):  # an argparse exit, too, fails this one and not the run
            traceback.print_exc()
            failed.append(name)
        finally:
            sys.argv = saved_argv
        print(f"--- {name}: {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
