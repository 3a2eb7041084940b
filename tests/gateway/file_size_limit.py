"""A real disk refusing writes, for a test: the process's largest file size (``RLIMIT_FSIZE``) lowered,
so the kernel refuses every write past it (EFBIG; SQLite: "disk I/O error"), as a full card refuses
them (ENOSPC). Reading needs no write: a spool still gives what it holds."""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def no_file_grows_past(size: int) -> Iterator[None]:
    """Writes past ``size`` bytes of any file refused by the kernel while the block runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # refused with EFBIG, the process not killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)


def limit_file_size(size: int) -> Callable[[], None]:
    """For ``subprocess.run(preexec_fn=…)``: the child's writes past ``size`` bytes of any file
    refused by the kernel, from its start."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit
