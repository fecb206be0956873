"""Shared fixtures. Paths: the repository root is three levels up; the shell binary is
$MAXSIMDB_SHELL or target/{debug,release}/maxsimdb; SciFact is ../shared/datasets/scifact."""

import os
import shutil

import numpy as np
import pytest

import maxsimdb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCIFACT = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "scifact")
MODELS = os.environ.get("MAXSIMDB_MODELS", os.path.expanduser("~/.cache/maxsimdb/models"))


def shell_binary():
    """The shell, or None. scripts/test.sh sets MAXSIMDB_SHELL (then a missing file fails)."""
    if os.environ.get("MAXSIMDB_SHELL"):
        path = os.environ["MAXSIMDB_SHELL"]
        assert os.path.isfile(path), f"MAXSIMDB_SHELL={path} does not exist"
        return path
    for profile in ("debug", "release"):
        p = os.path.join(ROOT, "target", profile, "maxsimdb")
        if os.path.isfile(p):
            return p
    return shutil.which("maxsimdb")


def require(condition, why):
    """Skip when a resource is missing, unless MAXSIMDB_REQUIRE_ALL=1 (CI), where it fails."""
    if condition:
        return
    if os.environ.get("MAXSIMDB_REQUIRE_ALL") == "1":
        pytest.fail(why + " (MAXSIMDB_REQUIRE_ALL=1)")
    pytest.skip(why)


@pytest.fixture
def db(tmp_path):
    with maxsimdb.open(str(tmp_path / "t.msdb")) as d:
        yield d


def random_docs(n, dim, seed=0, lo=3, hi=9):
    """n documents of unit-norm float32 token matrices with lo..hi-1 rows."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = rng.standard_normal((int(rng.integers(lo, hi)), dim)).astype(np.float32)
        out.append(t / np.linalg.norm(t, axis=1, keepdims=True))
    return out


def maxsim(q, d):
    """Reference MaxSim in numpy (float64): sum over query rows of the best dot product."""
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())
