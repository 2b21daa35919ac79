"""The file ledger (which file was read as which stream) under sources importing at once, as `make run` does."""
from __future__ import annotations

import json
import threading

from grid.imports.files import FileLedger


def test_sources_importing_at_once_keep_one_whole_ledger(tmp_path):
    # was (seen in make run): two sources' saves raced on the one temp file, FileNotFoundError in one import,
    # and its watched file was left failed; or a save iterated the entries while another thread added one
    ledger = FileLedger(tmp_path / "imports" / "files.json")
    errors: list[BaseException] = []

    def source(n: int) -> None:
        try:
            for i in range(150):
                f = tmp_path / f"s{n}-{i}.csv"
                f.write_text(f"a,b\n{n},{i}\n")
                stream, previous = ledger.stream_for(f"src{n}", f)
                assert stream.startswith(f.name + "@") and previous is None
        except BaseException as exc:  # noqa: BLE001 - collected for the assert below
            errors.append(exc)

    threads = [threading.Thread(target=source, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    saved = json.loads((tmp_path / "imports" / "files.json").read_text())
    assert len(saved) == 6 * 150
    # a fresh ledger over the same file (a restart) reads each file as the stream it was read as
    again = FileLedger(tmp_path / "imports" / "files.json")
    f = tmp_path / "s3-7.csv"
    assert again.stream_for("src3", f) == ledger.stream_for("src3", f)
