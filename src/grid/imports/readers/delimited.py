"""CSV and other delimited text, streamed in byte blocks through ``pyarrow.csv``.

# Design: the file is read in blocks of ``block_bytes`` cut at a line end that is outside quotes (the count of
# quote characters before the cut is even, which holds for RFC 4180 quoting with doubled quotes), and each block
# is parsed by pyarrow's multi-threaded CSV parser with every column as a string (mapping does the typing, so a
# bad value quarantines one row instead of failing the file). A position records the byte offset after its
# batch, so a resume (or an appended file) seeks straight there instead of re-parsing what was read.
# Encoding and delimiter are sniffed from the first 64 KiB: a UTF-8 BOM is skipped, text that is not UTF-8 is
# read as cp1252 (a superset of latin-1's printable range that Excel writes), the delimiter is the candidate
# (, ; tab |) that splits the first lines into the most, equal, fields. Excel's "Unicode Text" is UTF-16 with a
# BOM: the BOM is skipped and the file read as utf-16-le/-be (Python's plain "utf-16" codec wants a BOM at the
# start of every block pyarrow hands it), with blocks cut after a whole encoded line break.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from grid.errors import InvalidInput
from grid.imports.readers import Batch, FileInfo

BLOCK_BYTES = 8 << 20
SNIFF_BYTES = 64 << 10
DELIMITERS = ",;\t|"


def sniff_encoding(head: bytes) -> tuple[str, int]:
    """(encoding, bytes to skip) for a file starting with ``head``."""
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8", 3
    if head.startswith(b"\xff\xfe"):
        return "utf-16-le", 2
    if head.startswith(b"\xfe\xff"):
        return "utf-16-be", 2
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return "cp1252", 0
    return "utf-8", 0


def sniff_delimiter(text: str) -> str:
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        best, score = ",", -1
        for d in DELIMITERS:
            counts = [len(next(csv.reader([ln], delimiter=d))) for ln in lines]
            s = min(counts) if len(set(counts)) == 1 else min(counts) - 1
            if s > score:
                best, score = d, s
        return best


def _cut(block: bytes, quote: bytes, final: bool, newline: bytes = b"\n") -> int:
    """Length of the longest prefix of ``block`` that ends at a line end outside quotes (0: none).

    ``newline`` and ``quote`` are encoded as the file is; a match not on a character boundary (UTF-16: an odd
    offset) is a byte of some other character and is passed over."""
    if final:
        return len(block)
    unit = len(newline)
    end = len(block)
    while True:
        nl = block.rfind(newline, 0, end)
        if nl < 0:
            return 0
        if nl % unit == 0 and block.count(quote, 0, nl) % 2 == 0:
            return nl + unit
        end = nl + unit - 1


class DelimitedReader:
    """Reader for delimited text; options: ``delimiter``, ``encoding``, ``header_row`` (1-based line of the
    header; lines above it are skipped), ``header`` (false: columns are named ``1``, ``2``, ... or by
    ``columns``), ``quote``, ``block_bytes``."""

    def __init__(self, info: FileInfo, batch_rows: int | None = None):
        self.info = info
        o = info.options
        self.block_bytes = int(o.get("block_bytes", BLOCK_BYTES))
        with open(info.path, "rb") as f:
            head = f.read(SNIFF_BYTES)
        enc, self.bom = sniff_encoding(head)
        self.encoding = o.get("encoding") or enc
        if self.encoding == "auto":
            self.encoding = enc
        text = head[self.bom:].decode(self.encoding, errors="replace")
        self.quote = o.get("quote", '"')
        header_row = o.get("header_row", 1)
        if header_row == "auto":
            header_row = 1
        if isinstance(header_row, bool) or not isinstance(header_row, int):  # a per-sheet mapping is spreadsheets'
            raise InvalidInput(f"{info.path.name}: header_row of delimited text is a line number, not "
                               f"{header_row!r}", field="options.header_row")
        lines = text.splitlines(keepends=True)
        skip_lines = max(header_row - 1, 0)
        hint = None
        if o.get("header_row", "auto") == "auto":
            # blank lines above the header are not the header (read as one, pyarrow named and typed the columns
            # itself: meter "00123" became 123); nor is Excel's "sep=;" hint line, which names the delimiter
            while skip_lines < len(lines) and not lines[skip_lines].strip():
                skip_lines += 1
            m = re.match(r"sep=(.)\s*$", lines[skip_lines]) if skip_lines < len(lines) else None
            if m:
                hint, skip_lines = m.group(1), skip_lines + 1
        self.delimiter = o.get("delimiter") or "auto"
        if self.delimiter == "auto":
            self.delimiter = hint or sniff_delimiter("".join(lines[skip_lines:]))
        self.has_header = bool(o.get("header", True))
        # byte offset where data starts: after the BOM, the skipped lines and the header line
        pre = lines[:skip_lines + (1 if self.has_header else 0)]
        self.data_start = self.bom + len("".join(pre).encode(self.encoding))
        if self.has_header:
            if not pre:
                self.columns: list[str] = []
            else:
                row = next(csv.reader([pre[-1]], delimiter=self.delimiter, quotechar=self.quote), [])
                self.columns = [c.strip() for c in row]
                if len(set(self.columns)) != len(self.columns):
                    dup = next(c for c in self.columns if self.columns.count(c) > 1)
                    raise InvalidInput(f"{info.path.name}: column {dup!r} appears twice in the header",
                                       field="header")
        else:
            self.columns = list(o.get("columns") or [])

    def _parse(self, data: bytes, ncols: int) -> tuple[pa.Table, list[dict]]:
        """(table, malformed records) of one block, every column as text."""
        bad: list[dict] = []

        def on_invalid(row):
            bad.append({"text": row.text, "reason": "malformed",
                        "detail": f"expected {row.expected_columns} fields, got {row.actual_columns}"})
            return "skip"

        names = self.columns or [str(i + 1) for i in range(ncols)]
        # a block without any quote cannot hold a line break inside a value: the parser may then split it at
        # any line end and parse the pieces in parallel (twice as fast as the quote-aware scan)
        quoted = bool(self.quote) and data.find(self.quote.encode(self.encoding)) >= 0

        def read(block_size: int) -> pa.Table:
            return pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(column_names=names, encoding=self.encoding, block_size=block_size),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter, quote_char=self.quote or False,
                                                 newlines_in_values=quoted, invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False))

        try:
            table = read(1 << 20)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or len(data) < 1 << 20:
                raise
            # one record longer than pyarrow's 1 MiB block (a giant single line): parse the block in one piece
            bad.clear()
            table = read(len(data) + 1)
        return table, bad

    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        stream = self.info.stream
        if after is not None and after.get("stream") == stream:
            pos, row = int(after["byte"]), int(after["offset"])
        else:
            pos, row = self.data_start, 0
        quote = self.quote.encode(self.encoding) if self.quote else b"\x00"
        newline = "\n".encode(self.encoding)
        ncols = len(self.columns)
        with open(self.info.path, "rb") as f:
            f.seek(pos)
            carry = b""
            while True:
                chunk = f.read(self.block_bytes)
                block = carry + chunk
                if not block:
                    return
                final = not chunk
                # a tail source's last line may be half written: it waits for its line break (and the next read)
                n = _cut(block, quote, final and not self.info.complete_lines, newline)
                if n == 0:  # one record longer than a block: read on
                    if final:
                        return
                    carry = block
                    continue
                data, carry = block[:n], block[n:]
                if not ncols:
                    first = data.split(newline, 1)[0].decode(self.encoding, errors="replace")
                    ncols = len(next(csv.reader([first], delimiter=self.delimiter, quotechar=self.quote), []))
                try:
                    table, malformed = self._parse(data, ncols)
                except pa.ArrowInvalid as exc:
                    raise InvalidInput(f"{self.info.path.name}: unreadable text near byte {pos}: {exc}",
                                       field="file") from exc
                pos += n
                row += table.num_rows
                yield Batch({"stream": stream, "offset": row, "byte": pos}, table, rejected=malformed)
                if final:
                    return
