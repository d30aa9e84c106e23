"""SVMlight LTR files: qid fields and .query side files give the same data; bad files are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.ranking.svmlight import load

LTR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ltr_lambdarank"


def test_qid_fields_and_query_files_agree(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("2 qid:7 1:0.5 3:1\n0 qid:7 2:0.25\n1 qid:9 1:1 # c\n")
    (tmp_path / "b.txt").write_text("2 1:0.5 3:1\n0 2:0.25\n1 1:1\n")
    (tmp_path / "b.txt.query").write_text("2\n1\n")
    a, b = load(str(tmp_path / "a.txt")), load(str(tmp_path / "b.txt"))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.groups.tolist() == b.groups.tolist() == [2, 1]
    assert a.x.tolist() == [[0.5, 0.0, 1.0], [0.0, 0.25, 0.0], [1.0, 0.0, 0.0]]


def test_bad_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("1 1:0.5\n0 2:1\n")
    with pytest.raises(ValueError, match=r"no qid: fields and no .*c\.txt\.query"):
        load(str(tmp_path / "c.txt"))
    (tmp_path / "c.txt.query").write_text("3\n")
    with pytest.raises(ValueError, match=r"group sizes sum to 3 but .* has 2 rows"):
        load(str(tmp_path / "c.txt"))
    (tmp_path / "d.txt").write_text("1 qid:1 1:1\n0 qid:2 1:1\n1 qid:1 1:0\n")
    with pytest.raises(ValueError, match="consecutive"):
        load(str(tmp_path / "d.txt"))
    with pytest.raises(FileNotFoundError):
        load(str(tmp_path / "nope.txt"))


@pytest.mark.skipif(not (LTR / "rank.train").exists(), reason=f"real LTR data not found at {LTR}")
def test_reads_the_lambdarank_example() -> None:
    train = load(str(LTR / "rank.train"))
    test = load(str(LTR / "rank.test"), n_features=train.x.shape[1])
    assert (len(train), len(train.groups), len(test), len(test.groups)) == (3005, 201, 768, 50)
    assert set(np.unique(train.y)) <= {0, 1, 2, 3, 4} and train.x.shape[1] == test.x.shape[1] >= 280
