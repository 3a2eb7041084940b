"""What the exit code of a long-running command (``gateway run``, ``collector run``, ``server run``)
tells the service manager that runs it: start me again, or fix my configuration first.

A failure whose cure lies outside the unit's own inputs (a broker or database away, a spool's card
not there yet, a port or a spool another program holds, a database not migrated yet) exits
:data:`FAILED`: started again, the program picks the cure up by itself. One whose cure is an edit of
the unit's own inputs (its command line, its environment file, the file it names) exits
:data:`USAGE` or :data:`CONFIG`: started again every 10 s it said the same refusal for ever, and
systemd showed the unit "activating (auto-restart)", never "failed". Each example unit's
``RestartPreventExitStatus=`` lists exactly :data:`NOT_RESTARTED` (``tests/test_service_exit_codes.py``).
"""

from __future__ import annotations

from typing import Final

#: A failure that may pass: started again.
FAILED: Final = 1

#: click's usage error, as every command's: an unknown option, a value it refuses, a file that is not there.
USAGE: Final = 2

#: sysexits.h ``EX_CONFIG``, the code systemd documents for a configuration error: the gateway's file
#: refused, a database URL that is none, a port below 1024 without the privilege to listen there.
CONFIG: Final = 78

#: The codes no restart can cure, which each service unit does not restart on.
NOT_RESTARTED: Final = (USAGE, CONFIG)
