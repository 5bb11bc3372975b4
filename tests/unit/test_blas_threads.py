"""BLAS runs on one thread once the classifier has computed, also where main.py did not set it up."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_blas_is_set_to_one_thread_for_good_on_first_use():
    script = """
import json
import numpy as np
from threadpoolctl import ThreadpoolController
from handlers.classification.threads import single_blas_thread

def counts():
    return [lib.get_num_threads() for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]

before = counts()
with single_blas_thread():
    np.ones((64, 64)) @ np.ones((64, 64))
print(json.dumps({"before": before, "after": counts()}))
"""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["before"] and max(result["before"]) == 2
    assert result["after"] == [1] * len(result["after"])
