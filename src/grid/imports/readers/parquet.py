"""Parquet, streamed one record batch at a time (``pyarrow.parquet.ParquetFile.iter_batches``): typed columns
arrive typed (timestamps, decimals, integers) and the mapping converts them without a round trip through text."""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from grid.errors import InvalidInput
from grid.imports.readers import BATCH_ROWS, Batch, FileInfo, start_row


class ParquetReader:
    def __init__(self, info: FileInfo, batch_rows: int = BATCH_ROWS):
        self.info = info
        self.batch_rows = batch_rows

    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        stream = self.info.stream
        skip = start_row(after, stream) - 1
        try:
            pf = pq.ParquetFile(self.info.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"{self.info.path.name} is not a readable Parquet file: {exc}", field="file") from exc
        row = 0
        for rb in pf.iter_batches(batch_size=self.batch_rows):
            if row + rb.num_rows <= skip:
                row += rb.num_rows
                continue
            if row < skip:
                rb = rb.slice(skip - row)
                row = skip
            row += rb.num_rows
            yield Batch({"stream": stream, "offset": row}, pa.Table.from_batches([rb]))
