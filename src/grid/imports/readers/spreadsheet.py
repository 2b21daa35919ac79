"""Spreadsheets (.xlsx, .xlsm, .xls, .ods) through ``python-calamine``: several sheets, a header row that is
not on line 1, typed cells (numbers, dates and booleans arrive as such, not as their display text).

Options: ``sheets`` (names to read, in order; default the first sheet; ``"*"`` every sheet), ``header_row``
(1-based row of the header within each sheet, or ``auto``, the default: the first row with at least half its
cells filled, since department spreadsheets put a title and a blank line above the table; or a mapping of sheet
name -> row or ``auto`` when a workbook's sheets differ, a summary sheet's header lower than the detail's). Rows carry a
``_sheet`` column with their sheet's name; a row whose cells are all empty is skipped. Offsets count data rows
over the sheets in order.
"""
from __future__ import annotations

from typing import Iterator

import python_calamine

from grid.errors import InvalidInput
from grid.imports.readers import BATCH_ROWS, Batch, FileInfo, start_row


def _cell(v):
    if isinstance(v, str):
        return v if v.strip() else None
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)  # calamine gives every number as float; a whole number is an integer cell
    return v


def _header_index(rows: list[list], wanted) -> int:
    if wanted not in (None, "auto"):
        return int(wanted) - 1
    width = max((len(r) for r in rows[:50]), default=0)
    for i, r in enumerate(rows[:50]):
        filled = sum(1 for c in r if c not in ("", None))
        if width and filled >= max(2, (width + 1) // 2):
            return i
    return 0


class SpreadsheetReader:
    def __init__(self, info: FileInfo, batch_rows: int = BATCH_ROWS):
        self.info = info
        self.batch_rows = batch_rows
        try:
            self.book = python_calamine.CalamineWorkbook.from_path(str(info.path))
        except Exception as exc:  # calamine raises its own error types (zip, xml, password)
            raise InvalidInput(f"{info.path.name} is not a readable spreadsheet: {exc}", field="file") from exc
        want = info.options.get("sheets")
        names = self.book.sheet_names
        if want in (None, []):
            self.sheets = names[:1]
        elif want == "*":
            self.sheets = list(names)
        else:
            want = [want] if isinstance(want, str) else list(want)
            missing = [s for s in want if s not in names]
            if missing:
                raise InvalidInput(f"{info.path.name} has no sheet {missing[0]!r} (has {names})",
                                   field="options.sheets")
            self.sheets = want

    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        stream = self.info.stream
        skip = start_row(after, stream) - 1
        row = 0
        out: list[dict] = []
        for name in self.sheets:
            cells = self.book.get_sheet_by_name(name).to_python(skip_empty_area=False)
            if not cells:
                continue
            wanted = self.info.options.get("header_row", "auto")
            if isinstance(wanted, dict):
                wanted = wanted.get(name, "auto")
            h = _header_index(cells, wanted)
            header = [str(c).strip() if c not in ("", None) else f"column{j + 1}" for j, c in enumerate(cells[h])]
            for values in cells[h + 1:]:
                vals = [_cell(v) for v in values]
                if all(v is None or v == "" for v in vals):
                    continue
                row += 1
                if row <= skip:
                    continue
                rec = dict(zip(header, vals))
                rec["_sheet"] = name
                out.append(rec)
                if len(out) >= self.batch_rows:
                    yield Batch({"stream": stream, "offset": row}, out)
                    out = []
        if out:
            yield Batch({"stream": stream, "offset": row}, out)
