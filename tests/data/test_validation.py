"""Ids and timestamps are validated where a Dataset's interactions are built; layouts are never
resolved silently; files that are not regular are refused without hanging."""

from __future__ import annotations

import gzip
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, detect_format, load_atomic, load_movielens, load_path, load_tabular
from trustrec.errors import DataError, DataWarning


def _csv(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- ids --------------------------------------------------------------------------------------------
def test_integral_float_ids_above_2_63_stay_distinct():
    frame = pd.DataFrame({"user_id": [2.0**64, 2.0**64 + 4096, 2.0**70, 3.0], "item_id": [1, 2, 3, 4]})
    with pytest.warns(DataWarning, match="2\\*\\*53"):
        ds = Dataset.from_frame(frame, name="big")
    assert ds.n_users == 4
    assert ds.user_ids.tolist() == [str(int(2.0**64)), str(int(2.0**64 + 4096)), str(int(2.0**70)), "3"]


def test_small_float_ids_print_as_integers_without_warning():
    frame = pd.DataFrame({"user_id": [1.0, 2.0], "item_id": [10.0, 11.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = Dataset.from_frame(frame, name="f")
    assert ds.user_ids.tolist() == ["1", "2"] and ds.item_ids.tolist() == ["10", "11"]


def test_text_ids_are_kept_exactly(tmp_path):
    path = _csv(tmp_path, "user_id,item_id\n18446744073709551617,007\n18446744073709551616,7\n")
    ds = load_tabular(path)
    assert ds.user_ids.tolist() == ["18446744073709551617", "18446744073709551616"]
    assert ds.item_ids.tolist() == ["007", "7"]


def test_infinite_float_id_is_refused():
    frame = pd.DataFrame({"user_id": [1.0, np.inf], "item_id": [1, 2]})
    with pytest.raises(DataError, match=r"data row 1.*not a finite number"):
        Dataset.from_frame(frame, name="inf")


# -- timestamps -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["99999999999999999999", "-99999999999999999999", "1e300", "inf", "nan"])
def test_timestamp_overflow_or_nan_is_refused_with_the_line(tmp_path, value):
    path = _csv(tmp_path, f"user_id,item_id,timestamp\nu,i,1600000000\nv,j,{value}\n")
    with pytest.raises(DataError, match=r"t\.csv, line 3, column 'timestamp'"):
        load_tabular(path)


@pytest.mark.parametrize("values", [[1.0, 2e19], [1.0, np.nan], [1.0, -np.inf]])
def test_timestamp_overflow_in_a_frame_is_refused_with_the_row(values):
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": values})
    with pytest.raises(DataError, match="data row 1"):
        Dataset.from_frame(frame, name="ts")


def test_dates_past_2262_are_read(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\nu,i,2300-01-01\nu,j,2020-01-01\n")
    assert load_tabular(path).interactions.timestamp.tolist() == [10413792000, 1577836800]
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["2300-01-01", "2020-01-01"]})
    assert Dataset.from_frame(frame, name="late").interactions.timestamp[0] == 10413792000


def test_int64_timestamps_are_read_exactly(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\nu,i,1609459200123456789\nu,j,1609459200123456788\n")
    assert load_tabular(path).interactions.timestamp.tolist() == [1609459200123456789, 1609459200123456788]


def test_mixed_seconds_and_milliseconds_are_refused_with_both_rows(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\nu,i,1600000000\nu,j,1600000500\nv,k,1600000000123\n")
    with pytest.raises(DataError, match=r"seconds.*line 2.*milliseconds.*line 4"):
        load_tabular(path)
    frame = pd.DataFrame(
        {"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1_600_000_000, 1_600_000_000_000]}
    )
    with pytest.raises(DataError, match="mixes time units"):
        Dataset.from_frame(frame, name="units")


def test_one_unit_and_row_positions_are_accepted():
    for ts in ([0, 1, 2], [1_600_000_000_000, 1_600_000_100_000], [5, 1_600_000_000]):
        frame = pd.DataFrame({"user_id": ["a"] * len(ts), "item_id": list("xyz")[: len(ts)], "timestamp": ts})
        assert Dataset.from_frame(frame, name="ok").interactions.timestamp.tolist() == ts


def test_ambiguous_day_month_dates_are_refused_with_both_readings(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\nu,i,01/02/2020\nu,j,03/04/2020\n")
    with pytest.raises(DataError, match=r"line 2.*2020-02-01.*2020-01-02.*ISO 8601"):
        load_tabular(path)
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["01/02/2020", "03/04/2020"]})
    with pytest.raises(DataError, match="ambiguous"):
        Dataset.from_frame(frame, name="dates")


def test_day_first_dates_follow_the_printed_rule(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\nu,i,01/02/2020\nu,j,13/04/2020\nu,k,2020-01-05\n")
    ds = load_tabular(path)
    expected = pd.to_datetime(["2020-02-01", "2020-04-13", "2020-01-05"], utc=True)
    assert ds.interactions.timestamp.tolist() == [int(t.timestamp()) for t in expected]
    assert any("day/month/year" in n and "13/04/2020" in n for n in ds.notes)


def test_month_first_dates_follow_the_printed_rule_and_mixed_orders_are_refused(tmp_path):
    ds = load_tabular(_csv(tmp_path, "user_id,item_id,timestamp\nu,i,01/02/2020\nu,j,04/13/2020\n"))
    assert ds.interactions.timestamp[0] == int(pd.Timestamp("2020-01-02", tz="UTC").timestamp())
    assert any("month/day/year" in n for n in ds.notes)
    path = _csv(tmp_path, "user_id,item_id,timestamp\nu,i,13/02/2020\nu,j,04/13/2020\n", "m.csv")
    with pytest.raises(DataError, match="mixes date orders"):
        load_tabular(path)


# -- duplicates and density -------------------------------------------------------------------------
def test_density_counts_distinct_pairs_and_reports_repeats():
    frame = pd.DataFrame({"user_id": ["a"] * 5 + ["b"], "item_id": ["x"] * 5 + ["x"]})
    stats = Dataset.from_frame(frame, name="dup").stats()
    assert stats["density"] == 1.0
    assert stats["n_user_item_pairs"] == 2 and stats["n_repeated_interactions"] == 4
    assert any("repeat" in n for n in stats["notes"])


def test_density_never_exceeds_one_on_real_data(shared_data):
    from trustrec.data import load_dataset

    stats = load_dataset("amazon-industrial", data_dir=shared_data).stats()
    assert 0 < stats["density"] <= 1
    assert stats["n_user_item_pairs"] + stats["n_repeated_interactions"] == stats["n_interactions"]


# -- layouts ----------------------------------------------------------------------------------------
_INTER = "user_id:token\titem_id:token\nu\ti\nv\tj\n"


def test_several_inter_files_are_refused_with_the_choices(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a.inter").write_text(_INTER)
    (d / "b.inter").write_text(_INTER)
    with pytest.raises(DataError, match=r"a\.inter.*b\.inter.*pass the path"):
        load_atomic(d)
    assert load_atomic(d / "b.inter").name == "b"


def test_inter_named_like_its_folder_wins_and_the_choice_is_noted(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "mine.inter").write_text(_INTER)
    (d / "other.inter").write_text(_INTER + "w\tk\n")
    ds = load_atomic(d)
    assert ds.n_interactions == 2 and any("other.inter" in n for n in ds.notes)


def test_dotted_recbole_name_keeps_its_tables(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    (d / "ml.v2.inter").write_text(_INTER)
    (d / "ml.v2.item").write_text("item_id:token\ttitle:token_seq\ni\tOne\nj\tTwo\n")
    (d / "ml.v2.user").write_text("user_id:token\tage:float\nu\t20\nv\t30\n")
    for source in (d, d / "ml.v2.inter"):
        ds = load_atomic(source)
        assert ds.name == "ml.v2"
        assert ds.items["title"].tolist() == ["One", "Two"] and "age" in ds.users.columns


def test_movielens_refuses_a_file_that_is_not_its_ratings_file(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.data").write_text("1\t10\t5\t881250949\n")
    other = d / "mine.csv"
    other.write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match="ratings file"):
        load_movielens(other)
    with pytest.raises(DataError, match="ratings file"):
        load_path(other, format="movielens")
    assert load_movielens(d / "u.data").n_interactions == 1


def test_movielens_folder_with_two_ratings_files_is_refused(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.data").write_text("1\t10\t5\t881250949\n")
    (d / "ratings.dat").write_text("1::10::5::881250949\n")
    with pytest.raises(DataError, match="several MovieLens ratings files"):
        load_movielens(d)
    assert load_movielens(d / "ratings.dat").n_interactions == 1


def test_folder_matching_two_layouts_is_refused_with_the_choices(tmp_path):
    d = tmp_path / "both"
    d.mkdir()
    (d / "both.inter").write_text(_INTER)
    (d / "u.data").write_text("1\t10\t5\t881250949\n")
    with pytest.raises(DataError, match=r"atomic.*movielens"):
        detect_format(d)
    assert load_path(d, format="atomic").n_interactions == 2


def test_folder_of_several_tables_is_refused(tmp_path):
    d = tmp_path / "tables"
    d.mkdir()
    (d / "a.csv").write_text("user_id,item_id\n1,2\n")
    (d / "b.csv").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match=r"a.csv"):
        load_path(d)
    with pytest.raises(DataError, match="exactly one"):
        load_path(d, format="tabular")


# -- special files and compression -----------------------------------------------------------------
@pytest.mark.skipif(
    not hasattr(os, "mkfifo"), reason="os.mkfifo is POSIX-only: there are no FIFOs to probe on this platform (Windows)"
)
def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "ratings.csv"
    os.mkfifo(fifo)
    for call in (lambda: load_path(fifo), lambda: load_tabular(fifo), lambda: load_path(fifo, format="amazon")):
        with pytest.raises(DataError, match="FIFO"):
            call()


def test_folder_named_like_a_file_and_nul_names_are_refused(tmp_path):
    d = tmp_path / "ratings.csv"
    d.mkdir()
    with pytest.raises(DataError, match="folder"):
        load_tabular(d)
    with pytest.raises(DataError, match="NUL"):
        load_path(str(tmp_path / "a\x00b.csv"))


def test_gzip_bomb_stops_at_the_limit_with_how_to_raise_it(tmp_path, monkeypatch):
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"user_id,item_id\n")
        chunk = b"0" * (1 << 20)
        for _ in range(8):
            fh.write(chunk)
    monkeypatch.setenv("TRUSTREC_MAX_DECOMPRESSED", "4M")
    with pytest.raises(DataError, match="TRUSTREC_MAX_DECOMPRESSED"):
        load_tabular(path)
    monkeypatch.delenv("TRUSTREC_MAX_DECOMPRESSED")
    monkeypatch.setenv("TRUSTREC_MAX_COMPRESSION_RATIO", "2")
    big = tmp_path / "ratio.csv.gz"
    with gzip.open(big, "wb") as fh:
        fh.write(b"user_id,item_id\n" + b"1,2\n" * (20 << 20))
    with pytest.raises(DataError, match=r"decompression bomb.*TRUSTREC_MAX_COMPRESSION_RATIO"):
        load_tabular(big)


def test_truncated_gzip_is_refused(tmp_path):
    data = gzip.compress(os.urandom(1 << 16))
    path = tmp_path / "t.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"truncated|not valid gzip"):
        load_tabular(path)
