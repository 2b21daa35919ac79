"""The CLI as a new user meets it after `make run`: the server still running on the data directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from grid.wal import WriteAheadLog, locked_by_another

SOURCES = Path(__file__).resolve().parents[1] / "sources"


def test_import_into_a_data_dir_a_running_grid_holds_says_so_in_one_line(tmp_path):
    (tmp_path / "sources").mkdir()
    shutil.copy(SOURCES / "interval-wh.yaml", tmp_path / "sources")
    f = tmp_path / "reads.csv"
    f.write_text("sp,ts,wh\nS00000001,2026-01-01T00:00:00Z,5\n")
    wal_dir = tmp_path / "shards" / "shard-1" / "wal"
    assert not locked_by_another(wal_dir)  # no WAL yet
    with WriteAheadLog(wal_dir, fsync="off"):  # what a serving shard actor holds
        assert locked_by_another(wal_dir)
        # the command as a user types it, in its own process (no Ray of the test session in it)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        done = subprocess.run([sys.executable, "-m", "grid.cli", "import", str(f), "--source", "interval-wh",
                               "--data-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
        # was: shard actors started, refused by the WAL lock, ~260 lines of Ray tracebacks and rc 1
        assert done.returncode == 2, done.stderr[-2000:]
        err = done.stderr
        assert "is in use by a running contextgrid" in err and "POST /v1/imports/{source}" in err
        assert "Traceback" not in err
    assert not locked_by_another(wal_dir)  # the probe took no lock of its own that outlives it
