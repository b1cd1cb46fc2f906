"""Entry point: python -m trainer ..."""

import os
import sys

from trainer.cli import main

if __name__ == "__main__":
    rc = main()
    if os.environ.get("WORLD_SIZE", "1") != "1":
        # Under torchrun, skip interpreter teardown: Gloo's threads can abort the process
        # (SIGABRT, "terminate called without an active exception") after a clean finish.
        # Everything was written, fsynced and closed by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc or 0)
    sys.exit(rc)
