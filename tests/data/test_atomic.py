import pytest

from trustrec.data import load_atomic, load_path, read_atomic_file
from trustrec.errors import DataError


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def atomic_dir(tmp_path):
    d = tmp_path / "toy"
    d.mkdir()
    write(
        d / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t4\t10\nu1\ti2\t5\t20\nu2\ti1\t3\t15\n",
    )
    write(
        d / "toy.item",
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        'i1\tCafé, "quoted"\tDrama\ni2\t\tComedy Drama\ni3\tNever Rated\tAction\n',
        "latin-1",
    )
    write(d / "toy.user", "user_id:token\tage:token\tgender:token\nu1\t24\tM\nu2\t53\tF\n")
    return d


def test_loads_folder_with_types_titles_and_latin1(atomic_dir):
    ds = load_atomic(atomic_dir)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 3)
    items = ds.items
    assert items.loc[0, "title"] == 'Café, "quoted"'  # latin-1 decoded, quotes kept verbatim
    assert items["title"].isna().tolist() == [False, True, False]  # missing title is missing
    assert ds.interactions.rating.tolist() == [4.0, 5.0, 3.0]
    assert ds.users.set_index("user_id").loc["u2", "gender"] == "F"
    assert load_path(atomic_dir).n_interactions == 3  # detection picks the atomic loader


def test_header_without_type(tmp_path):
    p = write(tmp_path / "x.inter", "user_id\titem_id:token\nu\ti\n")
    with pytest.raises(DataError, match=r"x.inter, line 1, field 1: header 'user_id' has no type"):
        read_atomic_file(p)


def test_wrong_delimiter(tmp_path):
    p = write(tmp_path / "x.inter", "user_id:token,item_id:token\nu,i\n")
    with pytest.raises(DataError, match="has no tab; atomic files are tab-separated"):
        read_atomic_file(p)


def test_duplicate_header(tmp_path):
    p = write(tmp_path / "x.inter", "user_id:token\tuser_id:token\nu\tv\n")
    with pytest.raises(DataError, match="column 'user_id' appears twice"):
        read_atomic_file(p)


def test_empty_and_header_only(tmp_path):
    with pytest.raises(DataError, match="the file is empty"):
        read_atomic_file(write(tmp_path / "e.inter", ""))
    with pytest.raises(DataError, match="header but no data rows"):
        read_atomic_file(write(tmp_path / "h.inter", "user_id:token\titem_id:token\n"))


def test_non_numeric_float_names_line_and_column(tmp_path):
    p = write(tmp_path / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\nu\tj\tlater\n")
    with pytest.raises(DataError, match=r"x.inter, line 3, column 'timestamp': value is 'later'"):
        read_atomic_file(p)


def test_too_many_fields_names_line(tmp_path):
    p = write(tmp_path / "x.inter", "user_id:token\titem_id:token\nu\ti\nu\ti\textra\n")
    with pytest.raises(DataError, match="Expected 2 fields in line 2"):
        read_atomic_file(p)


def test_missing_item_id_is_named(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    write(d / "m.inter", "user_id:token\titem_id:token\nu\t\n")
    with pytest.raises(DataError, match="column 'item_id' has 1 missing ids"):
        load_atomic(d)
    write(d / "m.inter", "user_id:token\trating:float\nu\t1\n")
    with pytest.raises(DataError, match="missing required column 'item_id'"):
        load_atomic(d)


def test_sequence_file_expands_with_order_as_time(tmp_path):
    d = tmp_path / "seq"
    d.mkdir()
    write(d / "seq.test.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\na\t1 2 3\t4\nb\t5\t1\n")
    write(d / "seq.valid.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\na\t1 2\t3\n")
    write(d / "seq.item", "item_id:token\ttitle:token_seq\n1\tOne\n2\tTwo\n3\tThree\n4\tFour\n5\tFive\n")
    ds = load_atomic(d)
    assert ds.n_interactions == 6
    assert ds.item_ids[ds.histories().row(0)].tolist() == ["1", "2", "3", "4"]
    assert any("order" in n for n in ds.notes)


def test_real_ml100k(ml100k):
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_interactions) == (943, 1682, 100000)
    assert ml100k.items.loc[0, "title"] == "Toy Story"
    assert set(ml100k.users.columns) >= {"age", "gender", "occupation"}
    assert ml100k.interactions.rating.min() == 1 and ml100k.interactions.rating.max() == 5


def test_real_games_sequences(shared_data):
    from trustrec.data import load_dataset

    ds = load_dataset("amazon-games", data_dir=shared_data)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (50546, 16859, 440264)
