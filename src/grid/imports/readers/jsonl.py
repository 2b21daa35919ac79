"""JSON lines: one object per line, streamed in batches; nested values are reached by the mapping's ``path``
(``meter.id``). A line that is not a JSON object is a malformed record (quarantined), blank lines are skipped."""
from __future__ import annotations

from typing import Iterator

import msgspec

from grid.imports.readers import BATCH_ROWS, Batch, FileInfo

_decode = msgspec.json.Decoder().decode


class JsonLinesReader:
    def __init__(self, info: FileInfo, batch_rows: int = BATCH_ROWS):
        self.info = info
        self.batch_rows = batch_rows

    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        stream = self.info.stream
        resume = after is not None and after.get("stream") == stream
        row = int(after["offset"]) if resume else 0
        with open(self.info.path, "rb") as f:
            if resume:
                f.seek(int(after["byte"]))
            elif f.read(3) != b"\xef\xbb\xbf":
                f.seek(0)
            rows, bad = [], []
            while True:
                raw = f.readline()
                if raw.strip():
                    try:
                        obj = _decode(raw)
                    except msgspec.DecodeError as exc:
                        obj = exc
                    if isinstance(obj, dict):
                        rows.append(obj)
                    else:
                        bad.append({"text": raw.decode("utf-8", "replace").rstrip("\r\n"), "reason": "malformed",
                                    "detail": "not a JSON object" if not isinstance(obj, Exception) else str(obj)})
                if (not raw and (rows or bad)) or len(rows) >= self.batch_rows:
                    row += len(rows)
                    yield Batch({"stream": stream, "offset": row, "byte": f.tell()}, rows, rejected=bad)
                    rows, bad = [], []
                if not raw:
                    return
