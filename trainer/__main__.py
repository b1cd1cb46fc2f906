"""Entry point: python -m trainer ..."""

import os
import sys

from trainer.cli import main
from trainer.exit_record import EXIT_STOPPED

if __name__ == "__main__":
    rc = main()
    if os.environ.get("WORLD_SIZE", "1") != "1":
        # Under torchrun, skip interpreter teardown: Gloo's threads can abort the process
        # (SIGABRT, "terminate called without an active exception") after a clean finish.
        # Everything was written, fsynced and closed by now.
        # A stop (exit 4) leaves with 0 here: torchrun would take a worker's nonzero code for a
        # failure (and restart the workers, or exit 1 itself); exit.json says "stopped".
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if rc == EXIT_STOPPED else rc or 0)
    sys.exit(rc)
