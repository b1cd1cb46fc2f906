"""The real one-node SLURM the cluster tests run against (tests/services/slurm.sh start).

Never left out: without SLURM_CONF, or with a cluster that does not answer, the tests fail and
say the one command that starts it.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.cluster.slurm_jobs import Slurm

START = 'start the test cluster: eval "$(bash tests/services/slurm.sh start)"'


@pytest.fixture(scope="session")
def slurm() -> Slurm:
    """The cluster named by SLURM_CONF, checked to answer `sinfo`."""
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        pytest.fail(START, pytrace=False)
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True,
                             text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"sinfo failed ({e}); {START}", pytrace=False)
    if out.returncode != 0:
        pytest.fail(f"sinfo failed ({out.stderr.strip()}); {START}", pytrace=False)
    return Slurm(conf)
