"""Format loaders: MovieLens raw, Amazon 2018/2023 JSON lines, CSV/TSV/parquet, Coat, BIGRec/D3.

Small fixtures are written to ``tmp_path``; the real shared data is used only by the tests marked
``realdata`` (they read ``TRUSTREC_DATA``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, IndexedArray, Interactions
from trustrec.data._amazon import load_amazon
from trustrec.data._bigrec import load_bigrec
from trustrec.data._coat import load_coat
from trustrec.data._movielens import load_movielens
from trustrec.data._tabular import load_tabular
from trustrec.errors import ConfigError, DataError


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def flags(*on: int, n: int = 19) -> str:
    return "|".join("1" if i in on else "0" for i in range(n))


def raw_frame(data: Dataset) -> pd.DataFrame:
    inter = data.interactions
    frame = pd.DataFrame(
        {
            "user_id": data.user_ids[inter.user],
            "item_id": data.item_ids[inter.item],
            "timestamp": inter.timestamp,
        }
    )
    if inter.rating is not None:
        frame["rating"] = inter.rating
    return frame


# == MovieLens =====================================================================================
@pytest.fixture
def ml100k(tmp_path) -> Path:
    folder = tmp_path / "ml-100k"
    write(
        folder / "u.data",
        "1\t10\t5\t881250949\n2\t20\t3\t891717742\n\n1\t20\t4\t878887116\n3\t30\t2\t878887200\n",
    )
    write(
        folder / "u.item",
        (
            f"10|Toy Story (1995)|01-Jan-1995||http://imdb/1|{flags(3, 4, 5)}\n"
            f"20|Caf\xe9 Society (1996) |01-Jan-1996||http://imdb/2|{flags(0)}\n"
            f"30|unknown||||{flags()}\n"
            f"40|No Year|05-Mar-1997||http://imdb/4|{flags(8, 16)}\n"
        ).encode("latin-1"),
    )
    write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    return folder


def test_ml100k_raw(ml100k):
    data = load_movielens(ml100k)
    assert data.name == "ml-100k"
    assert (data.n_users, data.n_items, data.n_interactions) == (3, 4, 4)
    items = data.items.set_index("item_id")
    assert items.loc["10", "title"] == "Toy Story (1995)"
    assert items.loc["10", "genres"] == "Animation|Children's|Comedy"
    assert items.loc["20", "title"] == "Café Society (1996)"  # latin-1 byte decoded
    assert items.loc["20", "genres"] == "unknown"
    assert pd.isna(items.loc["30", "genres"])
    assert items.loc["40", "genres"] == "Drama|Thriller"
    assert items["year"].tolist() == [1995, 1996, pd.NA, 1997]  # 40: from the release date
    users = data.users.set_index("user_id")
    assert users.loc["2", "age"] == 53 and users.loc["2", "gender"] == "F"
    assert users.loc["3", "occupation"] == "writer" and users.loc["1", "zip_code"] == "85711"
    frame = raw_frame(data)
    assert frame["timestamp"].tolist() == [881250949, 891717742, 878887116, 878887200]
    assert frame["rating"].tolist() == [5, 3, 4, 2]


def test_ml100k_genre_file_names_the_flags(ml100k):
    names = [f"G{i}" for i in range(19)]
    write(ml100k / "u.genre", "".join(f"{g}|{i}\n" for i, g in enumerate(names)) + "\n")
    data = load_movielens(ml100k, name="custom")
    assert data.name == "custom"
    assert data.items.set_index("item_id").loc["10", "genres"] == "G3|G4|G5"


def test_ml100k_genre_file_wrong_count(ml100k):
    write(ml100k / "u.genre", "Action|0\nComedy|1\n")
    with pytest.raises(DataError, match=r"u\.genre: lists 2 genres but .*u\.item has 19"):
        load_movielens(ml100k)


def test_ml100k_bad_genre_flag(ml100k):
    text = (ml100k / "u.item").read_bytes().replace(b"http://imdb/2|1", b"http://imdb/2|2")
    write(ml100k / "u.item", text)
    with pytest.raises(DataError, match=r"u\.item, line 2, column 'flag_0' \(genre 'unknown'\)"):
        load_movielens(ml100k)


def test_ml100k_item_missing_from_catalog_is_noted(ml100k):
    with open(ml100k / "u.data", "a") as fh:
        fh.write("3\t99\t4\t878887300\n")
    data = load_movielens(ml100k)
    assert data.n_items == 5
    assert any("1 rated movies are not in u.item" in n for n in data.notes)
    assert pd.isna(data.items.set_index("item_id").loc["99", "title"])


def test_ml100k_without_side_files(tmp_path):
    write(tmp_path / "m" / "u.data", "1\t10\t5\t881250949\n")
    data = load_movielens(tmp_path / "m")
    assert (data.n_users, data.n_items, data.n_interactions) == (1, 1, 1)
    assert any("u.item not found" in n for n in data.notes)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (
            "1,10,5,881250949\n",
            r"u\.data, line 1: expected 4 tab-separated fields .* found 1 .*commas",
        ),
        (
            "1\t10\t5\t881250949\n2\t20\t3\tyesterday\n",
            r"u\.data, line 2, column 'timestamp': timestamp 'yesterday' is neither a number",
        ),
        (
            "1\t10\t5\t881250949\n\n2\t20\tgood\t891717742\n",
            r"u\.data, line 3, column 'rating': expected a numeric rating, got 'good'",
        ),
        (
            "1\t10\t5\t881250949\n2\t20\t3\n",
            r"u\.data, line 2: expected 4 tab-separated fields .*found 3",
        ),
        (
            "1\t10\t5\t881250949\n2\t20\t3\t5\t6\n",
            r"u\.data, line 2: expected 4 tab-separated fields .*found 5",
        ),
        (
            "1\t10\t5\t881250949\n\t20\t3\t891717742\n",
            r"u\.data, line 2, column 'user_id': the user id is missing",
        ),
        ("", r"u\.data: the file is empty"),
        ("\n\n", r"u\.data: the file is empty"),
    ],
)
def test_ml100k_bad_ratings(tmp_path, content, pattern):
    write(tmp_path / "m" / "u.data", content)
    with pytest.raises(DataError, match=pattern):
        load_movielens(tmp_path / "m")


def test_movielens_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no MovieLens ratings file; expected u\.data"):
        load_movielens(tmp_path / "empty")
    with pytest.raises(DataError, match=r"nowhere: folder not found"):
        load_movielens(tmp_path / "nowhere")


@pytest.fixture
def ml1m(tmp_path) -> Path:
    folder = tmp_path / "ml-1m"
    write(
        folder / "ratings.dat",
        "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::3408::4::978300275\n",
    )
    write(
        folder / "movies.dat",
        (
            "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
            "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
            '3408::Am\xe9lie: "Le Fabuleux" (2001)::Comedy|Romance\n'
            "5::Unrated Film (1999)::Drama\n"
        ).encode("latin-1"),
    )
    write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def test_ml1m_dat(ml1m):
    data = load_movielens(ml1m)
    assert data.name == "ml-1m"
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 4, 4)  # item 5 is unrated
    items = data.items.set_index("item_id")
    assert items.loc["3408", "title"] == 'Amélie: "Le Fabuleux" (2001)'
    assert items.loc["3408", "year"] == 2001
    assert items.loc["661", "genres"] == "Animation|Children's|Musical"
    users = data.users.set_index("user_id")
    assert users.loc["2", "age"] == 56 and users.loc["2", "occupation"] == 16
    assert users.loc["1", "gender"] == "F"
    assert raw_frame(data)["rating"].tolist() == [5, 3, 4, 4]


def test_ml1m_wrong_delimiter(ml1m):
    write(ml1m / "ratings.dat", "1\t1193\t5\t978300760\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 1: expected 4 double-colon-separated .*tabs"):
        load_movielens(ml1m)


def test_ml1m_bad_line_numbers(ml1m):
    write(ml1m / "ratings.dat", "1::1193::5::978300760\n\n1::661::3\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 3: expected 4 .*found 3"):
        load_movielens(ml1m)
    write(ml1m / "users.dat", "1::F::1::10::48067\n2::M::old::16::70072\n")
    write(ml1m / "ratings.dat", "1::1193::5::978300760\n")
    with pytest.raises(DataError, match=r"users\.dat, line 2, column 'age': expected an age group code"):
        load_movielens(ml1m)


def test_movielens_csv_layout(tmp_path):
    folder = tmp_path / "ml-latest-small"
    write(
        folder / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n",
    )
    write(
        folder / "movies.csv",
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n"
        '3,"Grumpier Old Men, The (1995)",Comedy|Romance\n',
    )
    data = load_movielens(folder)
    assert (data.n_users, data.n_items, data.n_interactions) == (1, 2, 2)
    items = data.items.set_index("item_id")
    assert items.loc["3", "title"] == "Grumpier Old Men, The (1995)"
    assert items.loc["3", "year"] == 1995


# == Amazon ========================================================================================
def jsonl(records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


@pytest.fixture
def amazon2018(tmp_path) -> tuple[Path, Path]:
    reviews = write(
        tmp_path / "Industrial_5.json",
        jsonl(
            [
                {
                    "reviewerID": "U1",
                    "asin": "A1",
                    "overall": 5.0,
                    "unixReviewTime": 1400000000,
                    "reviewText": "great",
                },
                {"reviewerID": "U1", "asin": "A2", "overall": 3.0, "unixReviewTime": 1400000100},
                "",
                {"reviewerID": "U2", "asin": "A1", "overall": 4.0, "unixReviewTime": 1400000200},
                {"reviewerID": "U2", "asin": "A9", "overall": 1.0, "unixReviewTime": 1400000300},
            ]
        ),
    )
    meta = write(
        tmp_path / "meta_Industrial.json",
        jsonl(
            [
                {
                    "asin": "A1",
                    "title": "Glue",
                    "brand": "Loctite",
                    "category": ["Industrial", "Adhesives"],
                    "description": ["Strong.", "Fast."],
                    "main_cat": "Tools",
                },
                ("{'asin': 'A2', 'title': 'Tape', 'brand': 'Scotch', 'category': [], 'description': []}"),
                {"asin": "A3", "title": "", "brand": "Acme"},
                {"asin": "A4", "title": "Only In Meta"},
            ]
        ),
    )
    return reviews, meta


def test_amazon_2018_with_meta(amazon2018):
    reviews, meta = amazon2018
    data = load_amazon(reviews, meta)
    assert data.name == "Industrial_5"
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 5, 4)
    items = data.items.set_index("item_id")
    assert items.loc["A1", "title"] == "Glue"
    assert items.loc["A1", "categories"] == "Industrial|Adhesives"
    assert items.loc["A1", "description"] == "Strong. Fast."
    assert items.loc["A1", "main_category"] == "Tools"
    assert items.loc["A2", "title"] == "Tape"  # the Python-literal line
    assert items.loc["A2", "brand"] == "Scotch" and pd.isna(items.loc["A2", "categories"])
    assert pd.isna(items.loc["A3", "title"]) and pd.isna(items.loc["A9", "title"])
    assert items.loc["A4", "title"] == "Only In Meta"  # meta-only items stay in the catalog
    assert data.stats()["items_without_title"] == 2
    assert any(
        "2 items have no title: 1 with an empty or missing title" in n and "1 reviewed items absent" in n
        for n in data.notes
    )
    assert any("2 items appear only in" in n for n in data.notes)
    frame = raw_frame(data)
    assert frame["timestamp"].tolist() == [1400000000, 1400000100, 1400000200, 1400000300]
    assert frame["rating"].tolist() == [5, 3, 4, 1]


def test_amazon_2018_without_meta(amazon2018):
    data = load_amazon(amazon2018[0])
    assert data.n_items == 3
    assert data.stats()["items_without_title"] == 3


def test_amazon_2023_gz(tmp_path):
    reviews = tmp_path / "Industrial.jsonl.gz"
    reviews.write_bytes(
        gzip.compress(
            jsonl(
                [
                    {
                        "user_id": "AG1",
                        "asin": "B01",
                        "parent_asin": "P01",
                        "rating": 5.0,
                        "timestamp": 1588615855070,
                        "text": "ok",
                    },
                    {"user_id": "AG1", "asin": "B02", "rating": 2.0, "timestamp": 1588615900999},
                    {
                        "user_id": "AG2",
                        "asin": "B03",
                        "parent_asin": "P01",
                        "rating": 4.0,
                        "timestamp": 1600000000000,
                    },
                ]
            ).encode()
        )
    )
    meta = tmp_path / "meta_Industrial.jsonl.gz"
    meta.write_bytes(
        gzip.compress(
            jsonl(
                [
                    {
                        "parent_asin": "P01",
                        "title": "Drill",
                        "main_category": "Tools",
                        "store": "Bosch",
                        "categories": ["Tools", "Power Tools"],
                        "description": ["A drill."],
                        "features": ["18V", "2 speeds"],
                    },
                    {"parent_asin": "P02", "title": None, "store": "Acme", "categories": []},
                ]
            ).encode()
        )
    )
    data = load_amazon(reviews, meta, name="ind23")
    assert data.name == "ind23"
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 3, 3)
    assert list(data.item_ids) == ["P01", "P02", "B02"]  # meta order, then reviewed-only items
    frame = raw_frame(data)
    assert frame["item_id"].tolist() == ["P01", "B02", "P01"]  # parent_asin, else asin
    assert frame["timestamp"].tolist() == [1588615855, 1588615900, 1600000000]
    items = data.items.set_index("item_id")
    assert items.loc["P01", "categories"] == "Tools|Power Tools"
    assert items.loc["P01", "features"] == "18V 2 speeds"
    assert items.loc["P01", "store"] == "Bosch"
    assert any("milliseconds to seconds" in n for n in data.notes)
    assert any("2 items have no title" in n for n in data.notes)


def test_amazon_bad_json_line(amazon2018, tmp_path):
    path = write(
        tmp_path / "r.json",
        jsonl(
            [
                {"reviewerID": "U1", "asin": "A1", "overall": 5.0, "unixReviewTime": 1},
                "",
                '{"reviewerID": "U2", "asin": "A1", "overall": 5.0,',
            ]
        ),
    )
    with pytest.raises(DataError, match=r"r\.json, line 3: not valid JSON"):
        load_amazon(path)
    # Reviews must be JSON; a Python-literal line is only accepted in meta files.
    path = write(
        tmp_path / "r2.json",
        "{'reviewerID': 'U2', 'asin': 'A1', 'overall': 5.0, 'unixReviewTime': 1}\n",
    )
    with pytest.raises(DataError, match=r"r2\.json, line 1: not valid JSON"):
        load_amazon(path)
    meta = write(tmp_path / "m.json", jsonl([{"asin": "A1", "title": "x"}, "{'asin': 'A2', 'title': }"]))
    with pytest.raises(DataError, match=r"m\.json, line 2: not valid JSON nor a Python literal"):
        load_amazon(amazon2018[0], meta)


@pytest.mark.parametrize(
    "records, pattern",
    [
        (
            [
                {"reviewerID": "U1", "asin": "A1", "overall": 5, "unixReviewTime": 1},
                {"reviewerID": "U1", "asin": "A2", "unixReviewTime": 2},
            ],
            r"r\.json, line 2, key 'overall': missing",
        ),
        (
            [
                {"reviewerID": "U1", "asin": "A1", "overall": 5, "unixReviewTime": 1},
                {"reviewerID": "U1", "asin": "A2", "overall": 5, "unixReviewTime": "soon"},
            ],
            r"r\.json, line 2, column 'unixReviewTime': timestamp 'soon' is neither",
        ),
        (
            [{"reviewerID": "U1", "asin": "A1", "overall": "five", "unixReviewTime": 1}],
            r"r\.json, line 1, column 'overall': expected a numeric rating, got 'five'",
        ),
        (
            [{"reviewerID": "", "asin": "A1", "overall": 5, "unixReviewTime": 1}],
            r"r\.json, line 1, column 'reviewerID': the user id is missing or empty",
        ),
        (
            [{"user_id": "U1", "rating": 5, "timestamp": 1, "parent_asin": None}],
            r"r\.json, line 1, key 'parent_asin' \(or 'asin'\): missing",
        ),
        ([{"who": "U1", "what": "A1"}], r"r\.json, line 1: cannot tell the Amazon review format"),
        ([[1, 2]], r"r\.json, line 1: expected a JSON object per line, got list"),
        ([], r"r\.json: the file is empty"),
    ],
)
def test_amazon_bad_reviews(tmp_path, records, pattern):
    path = write(tmp_path / "r.json", jsonl(records))
    with pytest.raises(DataError, match=pattern):
        load_amazon(path)


def test_amazon_latin1_bytes_and_duplicate_meta(tmp_path):
    reviews = write(
        tmp_path / "r.json",
        b'{"reviewerID": "U\xe9", "asin": "A1", "overall": 5, "unixReviewTime": 7}\n',
    )
    meta = write(
        tmp_path / "m.json",
        jsonl([{"asin": "A1", "title": "first"}, {"asin": "A1", "title": "again"}, {"title": "no id"}]),
    )
    with pytest.raises(DataError, match=r"m\.json, line 3, key 'parent_asin'/'asin': missing"):
        load_amazon(reviews, meta)
    write(meta, jsonl([{"asin": "A1", "title": "first"}, {"asin": "A1", "title": "again"}]))
    data = load_amazon(reviews, meta)
    assert list(data.user_ids) == ["Ué"]
    assert data.items["title"].tolist() == ["first"]
    assert any("1 repeated item ids (first at line 2)" in n for n in data.notes)


def test_amazon_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.json: file not found"):
        load_amazon(tmp_path / "nope.json")


# == Tabular =======================================================================================
def test_tabular_csv_guessed_columns_quoting_and_blank_lines(tmp_path):
    path = write(
        tmp_path / "log.csv",
        (
            "userId,movieId,rating,timestamp,comment\n"
            '1,"10",4.5,100,"plain"\n'
            "\n"
            '2,"a,b",3,200,"two\nlines"\n'
            "2,20,5,300,x\n"
        ),
    )
    data = load_tabular(path)
    assert data.name == "log"
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 3, 3)
    frame = raw_frame(data)
    assert frame["item_id"].tolist() == ["10", "a,b", "20"]
    assert frame["timestamp"].tolist() == [100, 200, 300]
    assert frame["rating"].tolist() == [4.5, 3, 5]
    assert any("user='userId'" in n and "item='movieId'" in n for n in data.notes)


def test_tabular_line_numbers_count_quoted_newlines(tmp_path):
    path = write(
        tmp_path / "log.csv",
        ('user_id,item_id,timestamp,note\n1,10,100,"multi\nline\nnote"\n\n2,20,oops,x\n'),
    )
    with pytest.raises(DataError, match=r"log\.csv, line 6, column 'timestamp': timestamp 'oops'"):
        load_tabular(path)


@pytest.mark.parametrize("sep, name", [("\t", "log.tsv"), (";", "log.txt"), ("|", "log.psv")])
def test_tabular_sniffs_separator(tmp_path, sep, name):
    path = write(
        tmp_path / name,
        sep.join(["uid", "iid", "score"])
        + "\n"
        + sep.join(["u1", "i1", "2"])
        + "\n"
        + sep.join(["u2", "i1", "4"])
        + "\n",
    )
    data = load_tabular(path)
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 1, 2)
    assert raw_frame(data)["rating"].tolist() == [2, 4]
    assert any("no timestamps" in n for n in data.notes)


def test_tabular_explicit_mapping_and_dates(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "who,what,when,stars,rating\na,p,2020-01-01,5,1\nb,q,2020-01-02T12:00:00Z,4,1\n",
    )
    data = load_tabular(path, columns={"user": "who", "item": "what", "timestamp": "when", "rating": "stars"})
    frame = raw_frame(data)
    assert frame["timestamp"].tolist() == [1577836800, 1577966400]
    assert frame["rating"].tolist() == [5, 4]
    data = load_tabular(path, columns={"user": "who", "item": "what", "rating": None, "timestamp": None})
    assert data.interactions.rating is None
    assert data.interactions.timestamp.tolist() == [0, 1]


def test_tabular_mapping_errors(tmp_path):
    path = write(tmp_path / "x.csv", "who,what\na,p\n")
    with pytest.raises(
        DataError,
        match=r"x\.csv, line 1: column 'person' \(mapped to role 'user'\) is not in "
        r"the header; available columns: \['who', 'what'\]",
    ):
        load_tabular(path, columns={"user": "person", "item": "what"})
    with pytest.raises(
        DataError,
        match=r"x\.csv, line 1: cannot find the column\(s\) for role\(s\) "
        r"\['user', 'item'\].*the header has \['who', 'what'\]",
    ):
        load_tabular(path)
    with pytest.raises(ConfigError, match=r"unknown role\(s\) \['price'\]"):
        load_tabular(path, columns={"user": "who", "item": "what", "price": "p"})
    with pytest.raises(ConfigError, match=r"role 'user' is required"):
        load_tabular(path, columns={"user": None, "item": "what"})


@pytest.mark.parametrize(
    "content, kwargs, pattern",
    [
        (
            "user_id,item_id,user_id\n1,2,3\n",
            {},
            r"line 1: column name 'user_id' appears twice .*fields 1 and 3",
        ),
        ("", {}, r"x\.csv: the file is empty"),
        ("user_id,item_id\n", {}, r"x\.csv: the file has a header but no data rows"),
        (
            "user_id\titem_id\n1\t2\n",
            {"sep": ","},
            (
                r"x\.csv, line 1: .*has no comma delimiter but contains "
                r"tabs.*pass sep='\\t'"
            ),
        ),
        (
            "user_id,item_id\n1,2\n,3\n",
            {},
            r"x\.csv, line 3, column 'user_id': the user id is missing",
        ),
        (
            "user_id,item_id\n1,2\n2,  \n",
            {},
            r"x\.csv, line 3, column 'item_id': the item id is missing",
        ),
        (
            "user_id,item_id,rating\n1,2,5\n1,3,NaN\n",
            {},
            (
                r"x\.csv, line 3, column 'rating': expected a numeric "
                r"rating, got 'NaN'"
            ),
        ),
        (
            "user_id,item_id,rating\n1,2,five\n",
            {},
            r"line 2, column 'rating': expected a numeric rating, got 'five'",
        ),
        (
            "user_id,item_id,timestamp\n1,2,\n",
            {},
            r"line 2, column 'timestamp': the timestamp is missing",
        ),
        (
            "user_id,item_id\n1,2\n1,2,3\n",
            {},
            r"x\.csv: cannot parse as comma-separated rows: .*line 3",
        ),
    ],
)
def test_tabular_bad_input(tmp_path, content, kwargs, pattern):
    path = write(tmp_path / "x.csv", content)
    with pytest.raises(DataError, match=pattern):
        load_tabular(path, **kwargs)


def test_tabular_latin1_gz_and_side_tables(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress("user_id,item_id,rating\nJos\xe9,i1,1\nAnn,i2,2\n".encode("latin-1")))
    items = write(tmp_path / "items.tsv", "item_id\tname\tprice\ni1\tLamp\t3.5\ni3\tChair\t10\n")
    users = write(tmp_path / "users.csv", "id,age\nAnn,30\nBob,40\n")
    data = load_tabular(path, items=items, users=users)
    assert data.name == "log"
    assert list(data.user_ids) == ["Ann", "Bob", "José"]
    assert list(data.item_ids) == ["i1", "i3", "i2"]
    assert data.items.set_index("item_id").loc["i1", "title"] == "Lamp"
    assert any("1 items in the interactions are not in items.tsv" in n for n in data.notes)
    write(items, "item_id,name\ni1,Lamp\ni1,Again\n")
    with pytest.raises(DataError, match=r"items\.tsv, line 3, column 'item_id': item id 'i1' appears again"):
        load_tabular(path, items=items)
    write(items, "sku,name\ni1,Lamp\n")
    with pytest.raises(DataError, match=r"items\.tsv, line 1: no item id column.*\['sku', 'name'\]"):
        load_tabular(path, items=items)


def test_tabular_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {
            "user_id": [1, 2, 2],
            "parent_asin": ["a", "b", "a"],
            "overall": [5.0, 4.0, 3.0],
            "unixReviewTime": [10, 20, 30],
        }
    ).to_parquet(path)
    data = load_tabular(path)
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 2, 3)
    assert list(data.user_ids) == ["1", "2"]
    assert raw_frame(data)["timestamp"].tolist() == [10, 20, 30]
    pd.DataFrame({"user_id": ["u", None], "item_id": ["a", "b"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"log\.parquet, data row 2, column 'user_id': the user id is missing"):
        load_tabular(path)
    write(tmp_path / "bad.parquet", b"not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: cannot read as parquet"):
        load_tabular(tmp_path / "bad.parquet")


def test_tabular_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"none\.csv: file not found"):
        load_tabular(tmp_path / "none.csv")


# == Coat ==========================================================================================
def matrix_text(m) -> str:
    return "".join(" ".join(f"{v:g}" for v in row) + " \n" for row in m)


@pytest.fixture
def coat(tmp_path) -> Path:
    folder = tmp_path / "coat"
    train = np.array([[5, 0, 0, 3], [0, 1, 0, 0], [0, 0, 4, 2]])
    test = np.array([[0, 2, 0, 0], [4, 0, 0, 0], [0, 0, 0, 1]])
    write(folder / "train.ascii", matrix_text(train))
    write(folder / "test.ascii", matrix_text(test))
    write(folder / "propensities.ascii", matrix_text(np.full((3, 4), 0.25)))
    feat = folder / "user_item_features"
    write(
        feat / "user_features.ascii",
        matrix_text([[1, 0, 0, 1, 1], [0, 1, 1, 0, 0], [0, 1, 0, 1, 1]]),
    )
    write(feat / "user_features_map.txt", "gender:men\ngender:women\nage:20-30\nage:over 60\nvip")
    write(feat / "item_features.ascii", matrix_text([[1, 0], [0, 1], [1, 0], [0, 0]]))
    write(feat / "item_features_map.txt", "color:red\ncolor:blue\n")
    return folder


def test_coat(coat):
    data = load_coat(coat)
    assert data.name == "coat"
    assert (data.n_users, data.n_items, data.n_interactions) == (3, 4, 5)
    frame = raw_frame(data)
    assert frame[["user_id", "item_id"]].values.tolist() == [
        ["0", "0"],
        ["0", "3"],
        ["1", "1"],
        ["2", "2"],
        ["2", "3"],
    ]
    assert frame["rating"].tolist() == [5, 3, 1, 4, 2]
    assert (frame["timestamp"] == 0).all()
    assert any("no timestamps" in n for n in data.notes)
    test = data.extras["random_exposure_test"]
    assert isinstance(test, Interactions) and len(test) == 3
    assert test.rating.tolist() == [2, 4, 1] and test.user.tolist() == [0, 1, 2]
    prop = data.extras["propensities"]
    assert isinstance(prop, IndexedArray) and prop.axes == ("user", "item") and prop.array.shape == (3, 4)
    users = data.users
    assert users["gender"].tolist() == ["men", "women", "women"]
    assert users["age"].tolist() == ["over 60", "20-30", "over 60"]
    assert users["vip"].tolist() == [True, False, True]
    items = data.items
    assert items["color"].tolist()[:3] == ["red", "blue", "red"] and pd.isna(items["color"].iloc[3])


def test_coat_threshold(coat):
    data = load_coat(coat, positive_threshold=3)
    assert data.n_interactions == 3 and data.n_items == 4
    assert len(data.extras["random_exposure_test"]) == 3
    assert any("kept 3 of 5 train ratings" in n for n in data.notes)
    with pytest.raises(ConfigError, match="positive_threshold must be a number"):
        load_coat(coat, positive_threshold="high")


@pytest.mark.parametrize(
    "file, content, pattern",
    [
        (
            "test.ascii",
            "0 1 0 0\n0 0 0 0\n",
            (
                r"test\.ascii: the test matrix is 2 x 4, expected 3 x 4 to match "
                r"train\.ascii"
            ),
        ),
        (
            "propensities.ascii",
            "0.1 0.2 0.3\n" * 3,
            r"propensities\.ascii: the propensity matrix is 3 x 3",
        ),
        (
            "train.ascii",
            "5 0 0 3\n0 1 0\n0 0 4 2\n",
            r"train\.ascii, line 2: 3 values, but line 1 has 4",
        ),
        (
            "train.ascii",
            "5 0 0 3\n\n0 1 x 0\n",
            r"train\.ascii, line 3, column 3: 'x' is not a finite number",
        ),
        ("train.ascii", "", r"train\.ascii: the file is empty"),
        (
            "user_item_features/user_features_map.txt",
            "gender:men\ngender:women\n",
            r"user_features\.ascii: 5 feature columns but user_features_map\.txt names 2",
        ),
        (
            "user_item_features/item_features.ascii",
            "1 0\n0 1\n1 0\n",
            (
                r"item_features\.ascii: the item-feature "
                r"matrix is 3 x 2, expected 4 x any"
            ),
        ),
        (
            "user_item_features/item_features.ascii",
            "1 0\n0 1\n2 0\n0 0\n",
            (
                r"item_features\.ascii, line 3, "
                r"column 1 \('color:red'\)"
            ),
        ),
    ],
)
def test_coat_bad_input(coat, file, content, pattern):
    write(coat / file, content)
    with pytest.raises(DataError, match=pattern):
        load_coat(coat)


def test_coat_minimal_folder(tmp_path):
    write(tmp_path / "c" / "train.ascii", "1 0\n0 2\n")
    data = load_coat(tmp_path / "c", name="mini")
    assert (data.name, data.n_users, data.n_items, data.n_interactions) == ("mini", 2, 2, 2)
    assert data.extras == {}
    assert sum("not found" in n for n in data.notes) == 4
    with pytest.raises(DataError, match=r"train\.ascii: file not found"):
        load_coat(tmp_path)


# == BIGRec / D3 ===================================================================================
HEADER = (
    "user_id,item_asins,item_asin,history_item_id,item_id,history_item_title,item_title,"
    "history_rating,rating,history_timestamp,timestamp\n"
)


def bigrec_row(user, hist, target) -> str:
    """hist: [(id, asin, title, rating, ts)], target: (id, asin, title, rating, ts)."""

    def q(s):
        return '"' + s.replace('"', '""') + '"'

    asins = "[" + ", ".join(repr(h[1]) for h in hist) + "]"
    ids = "[" + ", ".join(str(h[0]) for h in hist) + "]"
    titles = repr([h[2] for h in hist])
    ratings = "[" + ", ".join(repr(float(h[3])) for h in hist) + "]"
    stamps = "[" + ", ".join(str(h[4]) for h in hist) + "]"
    tid, tasin, ttitle, trating, tts = target
    return (
        ",".join(
            [
                user,
                q(asins),
                tasin,
                q(ids),
                str(tid),
                q(titles),
                q(ttitle),
                q(ratings),
                str(float(trating)),
                q(stamps),
                str(tts),
            ]
        )
        + "\n"
    )


ITEMS = {
    i: (i, f"B{i:03d}", t) for i, t in enumerate(["Glue, strong", 'Men\'s "Pro" Tape', "Drill", "Saw", "Unseen item"])
}


def ev(i, rating, ts):
    return (*ITEMS[i], rating, ts)


@pytest.fixture
def bigrec(tmp_path) -> Path:
    folder = tmp_path / "Industrial"
    write(folder / "info" / "Ind.txt", "".join(f"{t}\t{i}\n" for i, (_, _, t) in ITEMS.items()))
    write(
        folder / "valid" / "Ind.csv",
        HEADER
        + bigrec_row("U1", [ev(0, 5, 100)], ev(1, 4, 200))
        + bigrec_row("U2", [ev(0, 3, 110), ev(2, 2, 120)], ev(3, 5, 210)),
    )
    write(
        folder / "test" / "Ind.csv",
        HEADER
        + bigrec_row("U1", [ev(0, 5, 100), ev(1, 4, 200)], ev(2, 1, 300))
        + bigrec_row("U2", [ev(0, 3, 110), ev(2, 2, 120), ev(3, 5, 210)], ev(0, 4, 310))
        + bigrec_row("U3", [], ev(3, 3, 320)),
    )
    return folder


def test_bigrec_rebuilds_log(bigrec):
    data = load_bigrec(bigrec)
    assert data.name == "Industrial"
    # events: valid 3 history + 2 targets, test 5 history + 3 targets = 13; 5 repeats
    assert (data.n_users, data.n_items, data.n_interactions) == (3, 5, 8)
    frame = raw_frame(data)
    assert frame["timestamp"].tolist() == sorted(frame["timestamp"])
    assert frame[frame.user_id == "U2"][["item_id", "timestamp", "rating"]].values.tolist() == [
        ["0", 110, 3],
        ["2", 120, 2],
        ["3", 210, 5],
        ["0", 310, 4],
    ]
    note = data.notes[0]
    assert "without a train split" in note
    assert "3 valid history events, 2 valid targets, 5 test history events, 3 test targets (13 events)" in note
    assert "5 repeated (user, item, timestamp) events removed" in note
    assert "8 interactions remain, of which 2 are valid targets, 3 are test targets, 3 appear only in histories" in note
    assert {k: len(v) for k, v in data.extras.items()} == {"valid": 2, "test": 3}
    assert data.extras["test"].timestamp.tolist() == [300, 310, 320]
    items = data.items.set_index("item_id")
    assert items.loc["1", "title"] == 'Men\'s "Pro" Tape' and items.loc["0", "title"] == "Glue, strong"
    assert items.loc["2", "asin"] == "B002" and pd.isna(items.loc["4", "asin"])


def test_bigrec_with_train_split(bigrec):
    write(bigrec / "train" / "Ind.csv", HEADER + bigrec_row("U4", [ev(4, 2, 50)], ev(0, 1, 60)))
    data = load_bigrec(bigrec)
    assert data.n_users == 4 and data.n_interactions == 10
    assert "built from the histories and targets of the train, valid, test rows" in data.notes[0]
    assert not any("train split is absent" in n for n in data.notes)


@pytest.mark.parametrize(
    "row, pattern",
    [
        (
            'U9,"[\'B000\']",B001,"[0, 1",1,"[\'x\']",t,"[5.0]",4.0,"[1]",2\n',
            r"Ind\.csv, line 2, column 'history_item_id': '\[0, 1' is not a Python-literal list",
        ),
        (
            'U9,"[\'B000\']",B001,"[0]",1,"[\'x\']",t,"[5.0, 4.0]",4.0,"[1]",2\n',
            r"line 2, columns 'history_item_id' and 'history_rating': lists of 1 and 2 elements",
        ),
        (
            'U9,"[\'B000\']",B001,"[0]",1,"[\'x\']",t,"[\'five\']",4.0,"[1]",2\n',
            r"line 2, column 'history_rating': element 'five'",
        ),
        (
            'U9,"[\'B000\']",B001,"{0: 1}",1,"[\'x\']",t,"[5.0]",4.0,"[1]",2\n',
            r"line 2, column 'history_item_id': '\{0: 1\}' is a dict",
        ),
        (
            'U9,"[\'B000\']",B001,,1,"[\'x\']",t,"[5.0]",4.0,"[1]",2\n',
            r"line 2, column 'history_item_id': the cell is empty",
        ),
        (
            'U9,"[\'B000\']",B001,"[0]",1,"[\'x\']",t,"[5.0]",4.0,"[1]",later\n',
            r"line 2, column 'timestamp': timestamp 'later' is neither",
        ),
        (
            ',"[\'B000\']",B001,"[0]",1,"[\'x\']",t,"[5.0]",4.0,"[1]",2\n',
            r"line 2, column 'user_id': the user id is missing",
        ),
    ],
)
def test_bigrec_malformed_cells(bigrec, row, pattern):
    write(bigrec / "valid" / "Ind.csv", HEADER + row)
    with pytest.raises(DataError, match=pattern) as info:
        load_bigrec(bigrec)
    assert str(bigrec / "valid" / "Ind.csv") in str(info.value)


def test_bigrec_layout_errors(bigrec, tmp_path):
    write(bigrec / "valid" / "Ind.csv", "user_id,item_id,timestamp\nU1,1,2\n")
    with pytest.raises(
        DataError,
        match=r"valid/Ind\.csv, line 1: missing column\(s\) \['history_item_id', "
        r"'history_timestamp'\]",
    ):
        load_bigrec(bigrec)
    write(bigrec / "info" / "Ind.txt", "Glue\t0\nno tab here\n")
    with pytest.raises(DataError, match=r"Ind\.txt, line 2: no tab"):
        load_bigrec(bigrec)
    write(bigrec / "info" / "Ind.txt", "Glue\t0\nGlue again\t0\n")
    with pytest.raises(DataError, match=r"Ind\.txt, line 2, column 2 \(item_id\): item id '0' is listed again"):
        load_bigrec(bigrec)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=r"no info/\*\.txt"):
        load_bigrec(tmp_path / "nothing")


# == Real shared data ==============================================================================
@pytest.fixture
def data_dir(shared_data) -> Path:
    """The shared real-data folder (the conftest's ``shared_data`` skips with a reason if unset)."""
    return shared_data


@pytest.mark.realdata
def test_real_coat(data_dir):
    data = load_coat(data_dir / "coat")
    assert (data.n_users, data.n_items, data.n_interactions) == (290, 300, 6960)
    assert len(data.extras["random_exposure_test"]) == 4640
    assert data.extras["propensities"].array.shape == (290, 300)
    assert set(data.users.columns) == {"user_id", "gender", "age", "location", "fashioninterest"}
    assert set(data.items.columns) >= {
        "item_id",
        "gender",
        "jackettype",
        "color",
        "onfrontpage",
        "title",
    }
    assert data.users["gender"].notna().all() and data.items["color"].notna().all()


@pytest.mark.realdata
def test_real_amazon_industrial(data_dir):
    data = load_bigrec(data_dir / "amazon_Industrial_and_Scientific")
    assert data.n_items == 3686
    assert len(data.extras["valid"]) == 4532 and len(data.extras["test"]) == 4533
    assert data.items["title"].notna().all()
    assert data.interactions.has_rating
    assert any("without a train split" in n for n in data.notes)


@pytest.mark.realdata
def test_real_ml100k_atomic_folder(data_dir):
    data = load_movielens(data_dir / "ml-100k")
    assert (data.n_users, data.n_items, data.n_interactions) == (943, 1682, 100000)
