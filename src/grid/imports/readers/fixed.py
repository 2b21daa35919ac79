"""Fixed-width text: each column a slice of the line, declared in the source (``columns: [{name, start,
width}]``, ``start`` 1-based as record layouts print it), streamed line by line in batches.

Encoding as for delimited text (BOM skipped, non-UTF-8 read as cp1252); ``skip_lines`` drops a banner.
A line shorter than the last column's start is a malformed record (quarantined), blank lines are skipped.
"""
from __future__ import annotations

from typing import Iterator

from grid.errors import InvalidInput
from grid.imports.readers import BATCH_ROWS, Batch, FileInfo, line_batches
from grid.imports.readers.delimited import SNIFF_BYTES, sniff_encoding


class FixedWidthReader:
    def __init__(self, info: FileInfo, batch_rows: int = BATCH_ROWS):
        self.info = info
        self.batch_rows = batch_rows
        cols = info.options.get("columns")
        if not cols:
            raise InvalidInput(f"{info.path.name}: a fixed-width source needs options.columns", field="options.columns")
        self.slices = []
        for i, c in enumerate(cols):
            try:
                start = int(c["start"]) - 1
                width = int(c["width"])
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInput("each column needs name, start and width", field=f"options.columns[{i}]") from exc
            self.slices.append((str(c["name"]), start, start + width))
        self.min_len = max(s for _, s, _ in self.slices) + 1
        with open(info.path, "rb") as f:
            head = f.read(SNIFF_BYTES)
        enc, self.bom = sniff_encoding(head)
        self.encoding = info.options.get("encoding") or enc
        if self.encoding == "auto":
            self.encoding = enc
        if self.encoding.lower().replace("_", "-").startswith("utf-16"):
            # lines are cut at the byte b"\n", which in UTF-16 is half a character: refuse rather than misread
            raise InvalidInput(f"{info.path.name}: fixed-width text in UTF-16 is not supported; save it as UTF-8",
                               field="encoding")
        self.skip_lines = int(info.options.get("skip_lines", 0))

    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        stream = self.info.stream
        resume = after is not None and after.get("stream") == stream
        row = int(after["offset"]) if resume else 0
        with open(self.info.path, "rb") as f:
            if resume:
                f.seek(int(after["byte"]))
            else:
                f.seek(self.bom)
                for _ in range(self.skip_lines):
                    f.readline()
            yield from line_batches(f, self._parse, stream, row, self.batch_rows,
                                    complete_lines=self.info.complete_lines)

    def _parse(self, raw: bytes):
        line = raw.decode(self.encoding, errors="replace").rstrip("\r\n")
        if not line.strip():
            return None, None
        if len(line) < self.min_len:
            return None, {"text": line, "reason": "malformed",
                          "detail": f"line has {len(line)} characters, a record needs {self.min_len}"}
        return {n: line[a:b] for n, a, b in self.slices}, None
