"""A 2-process CPU run (torchrun, gloo) gathers ATS statistics across ranks: same tau trajectory as one process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmrec import runs  # noqa: F401
from llmrec.core import rundir

SCRIPT = Path(__file__).with_name("dist_train.py")


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_give_the_tau_trajectory_of_one(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMREC_RUNS": str(tmp_path)}
    two = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", str(SCRIPT),
                          str(tmp_path / "two"), "4"], env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "8"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    t2 = [r["tau"] for r in rundir.read_log(tmp_path / "two") if "tau" in r]
    t1 = [r["tau"] for r in rundir.read_log(tmp_path / "one") if "tau" in r]
    assert len(t1) == len(t2) == 6
    assert t2[0] == pytest.approx(t1[0], rel=1e-5)  # same global batch, same weights: identical statistics
    np.testing.assert_allclose(t2, t1, rtol=1e-3)  # afterwards the two runs differ only by float summation order
    assert rundir.read_json(tmp_path / "two" / "done.json")["world_size"] == 2
    # the run's identity records the process count and the global batch (part of the run cache's key)
    assert rundir.read_json(tmp_path / "two" / "identity.json")["world_size"] == 2
    assert rundir.read_json(tmp_path / "one" / "identity.json")["world_size"] == 1
    assert rundir.read_json(tmp_path / "two" / "identity.json")["global_batch"] == 8
    # the statistics were gathered: rank 0 counts the positions of the whole global batch, not its half
    n2 = [r["ats_n_positions"] for r in rundir.read_log(tmp_path / "two") if "tau" in r]
    n1 = [r["ats_n_positions"] for r in rundir.read_log(tmp_path / "one") if "tau" in r]
    assert n2 == n1
