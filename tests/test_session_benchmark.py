"""The SR-GNN session protocol: hand-made cases, then the real Diginetica split when it is there."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from retrieval.sessions.benchmark import item_knn, load, p_and_mrr_at_k, pop_ranking, popularity, s_pop

DIGINETICA = Path(__file__).resolve().parents[2] / "shared" / "data" / "diginetica"


def write(folder: Path, train: str, test: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_sessions.txt").write_text(train)
    (folder / "test_prefix_label.tsv").write_text("prefix\tlabel\n" + test)
    return str(folder)


def test_metrics_by_hand() -> None:
    ranked = np.array([[5, 6, 7], [1, 2, 3], [9, 8, 7]])
    p, m = p_and_mrr_at_k(ranked, np.array([6, 4, 9]), k=3)
    assert p == pytest.approx(200 / 3) and m == pytest.approx(100 * (1 / 2 + 0 + 1) / 3)


def test_baselines_on_a_tiny_dataset(tmp_path: Path) -> None:
    d = load(write(tmp_path / "d", "1 2 3\n2 3\n3 4\n3 1\n", "1 1 2\t1\n4\t3\n"))
    counts = popularity(d.train, d.n_items)
    assert counts.tolist() == [0, 2, 2, 4, 1] and pop_ranking(counts, 3).tolist() == [3, 1, 2]
    assert s_pop(d.prefixes, counts, 3).tolist() == [[1, 2, 3], [4, 3, 1]]
    knn = item_knn(d.train, d.n_items, d.prefixes, k=2)
    assert knn[1].tolist() == [3, 1]  # item 4 co-occurs with 3 only; POP fills the rest


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train_sessions\.txt"):
        load(str(tmp_path))
    with pytest.raises(ValueError, match=r"train_sessions.txt:2: not a list of integer item ids"):
        load(write(tmp_path / "a", "1 2\nx y\n", "1\t2\n"))
    with pytest.raises(ValueError, match=r"header must be"):
        (tmp_path / "a" / "test_prefix_label.tsv").write_text("a\tb\n1\t2\n")
        (tmp_path / "a" / "train_sessions.txt").write_text("1 2\n")
        load(str(tmp_path / "a"))


@pytest.mark.slow
@pytest.mark.skipif(
    not DIGINETICA.exists(), reason=f"{DIGINETICA} absent (real data lives in ../shared/data/)"
)
def test_diginetica_protocol_reproduces_known_figures() -> None:
    d = load(str(DIGINETICA))
    assert (len(d.train), len(d.prefixes), d.n_items) == (186670, 60858, 43097)
    counts = popularity(d.train, d.n_items)
    pop = p_and_mrr_at_k(np.tile(pop_ranking(counts, 20), (len(d.prefixes), 1)), d.labels)
    spop = p_and_mrr_at_k(s_pop(d.prefixes, counts), d.labels)
    # the dataset's MANIFEST: POP 0.93 / 0.21 and S-POP 21.08 / 13.69 recomputed on these files
    assert pop == pytest.approx((0.93, 0.21), abs=0.006) and spop == pytest.approx((21.08, 13.69), abs=0.006)
    knn = p_and_mrr_at_k(item_knn(d.train, d.n_items, d.prefixes), d.labels)
    assert knn == pytest.approx((35.75, 11.57), abs=1.0)  # SR-GNN's table: Item-KNN 35.75 / 11.57
    assert os.path.exists(DIGINETICA / "train_sessions.txt")
