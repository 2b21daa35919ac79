"""JSON lines: one object per line, streamed in batches; nested values are reached by the mapping's ``path``
(``meter.id``). A line that is not a JSON object is a malformed record (quarantined), blank lines are skipped."""
from __future__ import annotations

from typing import Iterator

import msgspec

from grid.imports.readers import BATCH_ROWS, Batch, FileInfo, line_batches

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
            yield from line_batches(f, _parse, stream, row, self.batch_rows,
                                    complete_lines=self.info.complete_lines)


def _parse(raw: bytes):
    if not raw.strip():
        return None, None
    try:
        obj = _decode(raw)
    except msgspec.DecodeError as exc:
        return None, {"text": raw.decode("utf-8", "replace").rstrip("\r\n"), "reason": "malformed",
                      "detail": str(exc)}
    if not isinstance(obj, dict):
        return None, {"text": raw.decode("utf-8", "replace").rstrip("\r\n"), "reason": "malformed",
                      "detail": "not a JSON object"}
    return obj, None
