"""Named moments at which a run can be made to die on purpose, for testing recovery.

``C2S_KILL_AT=NAME`` (or ``NAME:STEP``) kills the process with SIGKILL, which nothing can
catch or clean up after, when it reaches that moment: exactly what a preempted VM or an
out-of-memory kill does, but at a chosen place. The test suite uses it to check that a
rerun recovers; users can use it to check their own storage. The moments:

- ``checkpoint:STEP``: a checkpoint's asynchronous save of STEP has started, not finished;
- ``export``: the final bundle's weights are written, its manifest and rename are not;
- ``result``: the export is complete and ``result.json`` is not yet written.
"""

import os
import signal

KILL_ENV = "C2S_KILL_AT"


def reached(name: str, step: int | None = None) -> None:
    """Kills this process if ``C2S_KILL_AT`` names `name` (with `step`, if given)."""
    wanted = os.environ.get(KILL_ENV)
    if wanted and wanted in (name, f"{name}:{step}"):
        os.kill(os.getpid(), signal.SIGKILL)
