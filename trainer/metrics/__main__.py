"""python -m trainer.metrics [metrics options] | fetch-weights [--metrics ...]"""

import sys

from trainer.metrics.command import main

if __name__ == "__main__":
    sys.exit(main())
