"""`python -m trainer utility`: does synthetic data help a downstream task? (see cli.py)"""

from trainer.utility.cli import main

__all__ = ["main"]
