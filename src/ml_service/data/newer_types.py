"""Item types newer than the export contract (spec §11 item 16): which item_data columns are types, and their checks.

How a column is recognised is documented in docs/data-validation.md ("Newer item types").
"""

from __future__ import annotations

import logging
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np

from ml_service.data import schema
from ml_service.data.tenant import ITEM_TYPES, MAX_ITEM_TYPES, DataError, Issue, id_prefix

if TYPE_CHECKING:
    from ml_service.data.load import FileFindings

log = logging.getLogger("ml_service.data")


def check_unique(file: str, ids: list[str], lines: list[int]) -> None:
    """DataError at the second line of the first repeated item id."""
    first_line: dict[str, int] = {}
    for item_id, line in zip(ids, lines):
        seen = first_line.setdefault(item_id, line)
        if seen != line:
            raise DataError(Issue(file, line, "item_id", item_id, f"unique item ids (already on line {seen})"))


class NewerTypes:
    """The one-hot columns of item types newer than the contract (spec §11 item 16) in one item_data file.

    While reading, an id whose prefix names a candidate column (schema.ItemLayout.type_candidates) is kept with
    the provisional code 5 + that candidate's position, and every kept row's candidate cells are remembered.
    `settle` then makes the candidates some id names into type columns (codes 5, 6, ... in header order), checks
    their cells (0/1, exactly one 1 among all type columns, where the id says) and ignores the other candidates
    as unknown columns.
    """

    def __init__(self, header: list[str], candidates: list[int]) -> None:
        self.file_header = header
        self.candidates = candidates
        self.names = [header[c] for c in candidates]
        self._position = {name: j for j, name in enumerate(self.names)}
        self._cells = itemgetter(*candidates) if candidates else None
        self.kept_cells: list[tuple[str, ...]] = []
        self.type_names: tuple[str, ...] = ITEM_TYPES
        self._recode: np.ndarray | None = None

    def candidate_of(self, item_id: str) -> int | None:
        head = id_prefix(item_id)
        return None if head is None else self._position.get(head)

    def expect_one_hot(self, candidate: int) -> str:
        return f"only 0 in the columns {', '.join(ITEM_TYPES)}: item ids of type {self.names[candidate]} have the 1 in that column"

    def keep_row(self, row: list[str]) -> None:
        if self._cells is not None:
            cells = self._cells(row)
            self.kept_cells.append(cells if isinstance(cells, tuple) else (cells,))

    def settle(self, codes: np.ndarray, lines: list[int], findings: "FileFindings") -> np.ndarray:
        """bool per kept row: still kept once the type columns are known (defective rows warned and skipped)."""
        known = len(ITEM_TYPES)
        named = sorted({int(c) - known for c in np.unique(codes) if c >= known})
        accepted = named[: MAX_ITEM_TYPES - known]
        refused = set(named[len(accepted):])
        final = np.ones(codes.size, bool)
        columns = [self.names[j] for j in accepted]
        all_type_columns = ", ".join(ITEM_TYPES + tuple(columns))
        for r, (code, cells) in enumerate(zip(codes.tolist(), self.kept_cells)):
            own = code - known if code >= known else None
            if own in refused:
                findings.warn(lines[r], self.names[own], self.names[own],
                              f"at most {MAX_ITEM_TYPES - known} newer item types per file (type ignored)")
                final[r] = False
                continue
            bad = next((j for j in accepted if cells[j] not in schema.RATINGS), None)
            if bad is not None:
                findings.warn(lines[r], self.names[bad], cells[bad], schema.EXPECT_ZERO_ONE)
                final[r] = False
            elif any((cells[j] == "1") != (j == own) for j in accepted):
                known_part = ["1" if code == t else "0" for t in range(known)]
                findings.warn(lines[r], "", ",".join(known_part + [cells[j] for j in accepted]),
                              "exactly one 1 among the type columns " + all_type_columns + ", in the column the item id names")
                final[r] = False
        findings.unknown_columns([self.names[j] for j in range(len(self.names)) if j not in accepted])
        self.type_names = ITEM_TYPES + tuple(columns)
        recode = np.arange(known + len(self.names), dtype=np.int32)
        for rank, j in enumerate(accepted):
            recode[known + j] = known + rank
        self._recode = recode
        if columns:
            counts = {name: int(np.count_nonzero(codes[final] == known + j)) for name, j in zip(columns, accepted)}
            findings.report.new_item_types.update({n: findings.report.new_item_types.get(n, 0) + c for n, c in counts.items()})
            log.info("%s: newer item types accepted, each its own family: %s", findings.name,
                     ", ".join(f"{n} ({c} items)" for n, c in counts.items()))
        return final

    def recode(self, codes: np.ndarray) -> np.ndarray:
        """Provisional codes (5 + candidate position) as final codes (5 + position among the accepted types)."""
        return codes if self._recode is None else self._recode[codes]
