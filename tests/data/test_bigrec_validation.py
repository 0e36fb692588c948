"""Malformed BIGRec / D3 folders: each raises a DataError naming file, line and column.

Every test writes a small folder (synthetic rows in the shipped layout) into ``tmp_path``,
breaks one thing, and checks the message; the last ones load the real shipped folder.
"""

from __future__ import annotations

import ast
import csv as _csv
import hashlib
import itertools
from pathlib import Path

import pytest

from trustrec.data._bigrec import load_bigrec
from trustrec.errors import ConfigError, DataError

HEADER = [
    "user_id",
    "item_asins",
    "item_asin",
    "history_item_id",
    "item_id",
    "history_item_title",
    "item_title",
    "history_rating",
    "rating",
    "history_timestamp",
    "timestamp",
]
TITLES = {0: "Glue, strong", 1: "Men's Tape", 2: "Drill", 3: "Saw", 4: "Spare"}


def q(cell: str) -> str:
    """Quote a CSV cell."""
    return '"' + cell.replace('"', '""') + '"'


def row(user: str, hist: list[tuple[int, int]], target: tuple[int, int], **override: str) -> dict[str, str]:
    """A row's cells: ``hist`` and ``target`` are (item id, timestamp); ``override`` replaces cells."""
    cells = {
        "user_id": user,
        "item_asins": q(repr([f"B{i:03d}" for i, _ in hist])),
        "item_asin": f"B{target[0]:03d}",
        "history_item_id": q(repr([i for i, _ in hist])),
        "item_id": str(target[0]),
        "history_item_title": q(repr([TITLES[i] for i, _ in hist])),
        "item_title": q(TITLES[target[0]]),
        "history_rating": q(repr([4.0 for _ in hist])),
        "rating": "5.0",
        "history_timestamp": q(repr([t for _, t in hist])),
        "timestamp": str(target[1]),
    }
    cells.update(override)
    return cells


def csv_text(rows: list[dict[str, str]], header: list[str] = HEADER) -> str:
    return ",".join(header) + "\n" + "".join(",".join(r[c] for c in header) + "\n" for r in rows)


GOOD = [
    row("U1", [(0, 100), (1, 150)], (2, 200)),
    row("U2", [(1, 110)], (3, 210)),
    row("U3", [(2, 120), (3, 130), (0, 130)], (1, 220)),
]


def make(tmp_path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> tuple[Path, Path]:
    """A folder with a good test split and ``rows`` as the valid split; returns (folder, valid csv)."""
    folder = tmp_path / "D3"
    (folder / "info").mkdir(parents=True)
    (folder / "info" / "Ind.txt").write_text("".join(f"{t}\t{i}\n" for i, t in TITLES.items()), encoding="utf-8")
    for split, content in (("test", csv_text(GOOD)), ("valid", csv_text(rows, header))):
        (folder / split).mkdir()
        (folder / split / "Ind.csv").write_text(content, encoding="utf-8")
    return folder, folder / "valid" / "Ind.csv"


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def fails(tmp_path: Path, rows: list[dict[str, str]], pattern: str, header: list[str] = HEADER, **kw) -> str:
    """Load the broken folder; assert the error names the valid file and matches; nothing changed."""
    folder, csv = make(tmp_path, rows, header)
    before = fingerprint(folder)
    with pytest.raises(DataError, match=pattern) as info:
        load_bigrec(folder, **kw)
    assert str(csv) in str(info.value)
    assert fingerprint(folder) == before  # nothing written or deleted
    return str(info.value)


def test_good_folder_loads(tmp_path):
    folder, _ = make(tmp_path, GOOD)
    data = load_bigrec(folder, max_history=3)
    assert data.n_items == 5 and len(data.extras["valid"]) == 3


def test_missing_columns_all_named(tmp_path):
    header = [c for c in HEADER if c not in ("history_timestamp", "timestamp", "item_title")]
    msg = fails(
        tmp_path,
        GOOD,
        r"Ind\.csv, line 1: missing column\(s\) \['history_timestamp', 'timestamp', 'item_title'\]",
        header=header,
    )
    assert "this file has ['user_id', 'item_asins'" in msg


def test_history_title_list_length_differs(tmp_path):
    bad = row("U9", [(0, 100), (1, 150)], (2, 200), history_item_title=q(repr([TITLES[0]])))
    fails(
        tmp_path,
        [*GOOD, bad],
        r"Ind\.csv, line 5, columns 'history_item_id' and 'history_item_title': lists of 2 and 1 elements",
    )


def test_history_timestamp_list_length_differs(tmp_path):
    bad = row("U9", [(0, 100), (1, 150)], (2, 200), history_timestamp=q("[100, 150, 160]"))
    fails(tmp_path, [bad], r"line 2, columns 'history_item_id' and 'history_timestamp': lists of 2 and 3")


def test_item_asins_list_length_differs(tmp_path):
    bad = row("U9", [(0, 100), (1, 150)], (2, 200), item_asins=q("['B000']"))
    fails(tmp_path, [bad], r"line 2, columns 'history_item_id' and 'item_asins': lists of 2 and 1")


def test_target_title_differs_from_info(tmp_path):
    bad = row("U9", [(0, 100)], (2, 200), item_title="Hammer drill " + "x" * 100)
    msg = fails(
        tmp_path,
        [bad],
        r"line 2, column 'item_title': the title of item '2' is 'Hammer drill x+\.\.\.' here but "
        r"'Drill' in info/Ind\.txt",
    )
    assert "x" * 81 not in msg  # cut to 80 characters


def test_history_title_differs_from_info(tmp_path):
    bad = row("U9", [(0, 100), (1, 150)], (2, 200), history_item_title=q(repr([TITLES[0], "Mens Tape"])))
    fails(
        tmp_path,
        [GOOD[0], bad],
        r"line 3, column 'history_item_title', element 2: the title of item '1' is 'Mens Tape' "
        r"here but \"Men's Tape\" in info/Ind\.txt",
    )


def test_titles_compared_after_stripping(tmp_path):
    spaced = row("U9", [(0, 100)], (2, 200), item_title=q("  Drill "), history_item_title=q("[' Glue, strong  ']"))
    folder, _ = make(tmp_path, [spaced])
    assert len(load_bigrec(folder).extras["valid"]) == 1


def test_unknown_item_id(tmp_path):
    bad = row("U9", [(0, 100)], (2, 200), history_item_id=q("[7]"))
    fails(tmp_path, [bad], r"line 2, column 'history_item_id', element 1: item id '7' is not in info/Ind\.txt")
    bad = row("U9", [(0, 100)], (2, 200), item_id="8")
    fails(tmp_path / "t", [bad], r"line 2, column 'item_id': item id '8' is not in info/Ind\.txt")


def test_history_longer_than_max_history(tmp_path):
    fails(
        tmp_path,
        GOOD,
        r"Ind\.csv, line 4, column 'history_item_id': a history of 3 items, longer than max_history=2",
        max_history=2,
    )
    folder, _ = make(tmp_path / "ok", GOOD)
    assert len(load_bigrec(folder, max_history=None).extras["valid"]) == 3
    with pytest.raises(ConfigError, match="max_history"):
        load_bigrec(folder, max_history=-1)


def test_history_timestamps_decrease(tmp_path):
    bad = row("U9", [(0, 300), (1, 150)], (2, 400))
    fails(
        tmp_path,
        [GOOD[0], bad],
        r"line 3, column 'history_timestamp', element 2: timestamp 150 is earlier than the element before it \(300\)",
    )


def test_target_earlier_than_history(tmp_path):
    bad = row("U9", [(0, 100), (1, 250)], (2, 200))
    fails(
        tmp_path,
        [bad],
        r"line 2, column 'timestamp': the target's timestamp 200 is earlier than the last history timestamp 250",
    )


@pytest.mark.parametrize("token", ["", "nan", "NaN", "None", "null"])
def test_missing_value_in_required_column(tmp_path, token):
    bad = row("U9", [(0, 100)], (2, 200), rating=token)
    pattern = r"line 2, column 'rating': " + ("the cell is empty" if not token else f"'{token}' marks a missing value")
    fails(tmp_path, [bad], pattern)


def test_nan_history_list(tmp_path):
    bad = row("U9", [(0, 100)], (2, 200), history_timestamp="NaN")
    fails(tmp_path, [bad], r"line 2, column 'history_timestamp': 'NaN' marks a missing value")


@pytest.mark.parametrize("stamp", ["2018-01-01", "1500.5"])
def test_non_numeric_or_fractional_target_timestamp(tmp_path, stamp):
    bad = row("U9", [(0, 100)], (2, 200), timestamp=stamp)
    fails(tmp_path, [bad], rf"line 2, column 'timestamp': '{stamp}' is not a whole number")


def test_non_numeric_history_timestamp(tmp_path):
    bad = row("U9", [(0, 100)], (2, 200), history_timestamp=q("['yesterday']"))
    fails(tmp_path, [bad], r"line 2, column 'history_timestamp': element 'yesterday'")


def test_huge_cell_refused(tmp_path):
    bad = row("U9", [(0, 100)], (2, 200), history_item_title=q("['" + "a" * 1_000_001 + "']"))
    fails(tmp_path, [bad], r"line 2, column 'history_item_title': the cell holds 1,000,005 characters, over the")


def test_duplicate_rows_counted_in_notes(tmp_path):
    again = row("U1", [(0, 100), (1, 150), (2, 200)], (2, 200))
    folder, _ = make(tmp_path, [*GOOD, again, GOOD[1]])
    data = load_bigrec(folder)
    note = [n for n in data.notes if n.startswith("valid/Ind.csv")]
    assert note == [
        (
            "valid/Ind.csv: 2 rows repeat the (user_id, item_id, timestamp) of an earlier row (first: "
            "line 5 repeats line 2); 1 of them are identical in every column; all rows are kept as "
            "given (targets and extras included)"
        )
    ]
    assert len(data.extras["valid"]) == 5


# == Real shared data ==============================================================================
REAL = "amazon_Industrial_and_Scientific"


@pytest.mark.realdata
def test_real_folder_loads_unchanged(shared_data):
    folder = shared_data / REAL
    before = fingerprint(folder)
    data = load_bigrec(folder, max_history=10)
    assert (data.n_users, data.n_items, data.n_interactions) == (
        3285,
        3686,
        22743,
    )  # events shown twice in one row are kept twice
    assert (len(data.extras["valid"]), len(data.extras["test"])) == (4532, 4533)
    dups = [n for n in data.notes if "rows repeat the (user_id, item_id, timestamp)" in n]
    assert [n.split(":")[1].split(" rows")[0].strip() for n in dups] == ["183", "104"]
    assert fingerprint(folder) == before


@pytest.mark.realdata
def test_real_rows_broken_one_at_a_time(shared_data, tmp_path):
    """A real row with its second history title changed is refused, naming its line."""
    src = shared_data / REAL
    folder = tmp_path / REAL
    for sub in ("info", "valid"):
        (folder / sub).mkdir(parents=True)
        for f in (src / sub).iterdir():
            (folder / sub / f.name).write_bytes(f.read_bytes())
    csv = next((folder / "valid").iterdir())
    load_bigrec(folder)  # the copy loads
    with csv.open(encoding="utf-8", newline="") as fh:
        rows = list(itertools.islice(_csv.reader(fh), 6))  # the header and the first five rows
    col = rows[0].index("history_item_title")
    titles = ast.literal_eval(rows[5][col])
    assert len(titles) >= 2
    rows[5][col] = repr([titles[0], "Changed " + titles[1], *titles[2:]])
    with csv.open("w", encoding="utf-8", newline="") as fh:
        _csv.writer(fh, lineterminator="\n").writerows(rows)
    with pytest.raises(DataError, match=r"line 6, column 'history_item_title', element 2: the title of item"):
        load_bigrec(folder)
