"""Learning-to-rank data in the SVMlight format, as public LTR sets ship it (pure numpy + scikit-learn).

A line is ``label [qid:Q] idx:value ... [# comment]``. Query groups come either from the ``qid:``
fields (rows of one query must be consecutive) or from a side file ``<data>.query`` with one group
size per line (LightGBM's convention, e.g. its lambdarank example). Features are 1-based indices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass
class RankData:
    x: np.ndarray  # [n, n_features] float32 (dense; absent features are 0)
    y: np.ndarray  # [n] int64 graded labels
    qid: np.ndarray  # [n] int64 query ids, rows of one query consecutive

    @property
    def groups(self) -> np.ndarray:
        """Sizes of the consecutive query groups, in order."""
        change = np.flatnonzero(np.diff(self.qid)) + 1
        return np.diff(np.concatenate([[0], change, [len(self.qid)]]))

    def __len__(self) -> int:
        return len(self.y)


MAX_FEATURES = (
    100_000  # a feature index past this is an error, not a dense row of that width (public sets: 46-700)
)


def line_of_row(path: str, row: int) -> int:
    """The 1-based line of ``path`` that holds data row ``row`` (blank and comment lines hold none)."""
    seen = -1
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.split(b"#", 1)[0].strip():
                seen += 1
                if seen == row:
                    return number
    return number if seen >= 0 else 0


def load(path: str, n_features: int | None = None, max_features: int = MAX_FEATURES) -> RankData:
    """Reads ``path`` (and ``path.query`` when the rows carry no ``qid:``); errors name the file, and
    the line where one line is at fault (a NaN or infinite value, a feature index past ``max_features``)."""
    from sklearn.datasets import load_svmlight_file

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found")
    side = f"{path}.query"
    try:
        x, y, qid = load_svmlight_file(path, n_features=n_features, query_id=True, zero_based=False)
    except ValueError as e:
        raise ValueError(f"{path}: not an SVMlight file ({e})") from None
    if not np.any(qid) and os.path.exists(side):
        with open(side, encoding="utf-8") as f:
            sizes = np.array([int(line) for line in f if line.strip()], dtype=np.int64)
        if sizes.sum() != x.shape[0] or (sizes <= 0).any():
            raise ValueError(f"{side}: group sizes sum to {sizes.sum()} but {path} has {x.shape[0]} rows")
        qid = np.repeat(np.arange(len(sizes)), sizes)
    elif not np.any(qid):
        raise ValueError(f"{path}: no qid: fields and no {side} file: the query groups are unknown")
    qid = np.asarray(qid, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], np.diff(qid) != 0]))
    if len(np.unique(qid[starts])) != len(starts):
        raise ValueError(f"{path}: the rows of a query must be consecutive (qid {qid[starts][0]} recurs)")
    bad_label = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)) | (y < 0))
    if len(bad_label):
        r = int(bad_label[0])
        raise ValueError(
            f"{path}:{line_of_row(path, r)}: label {float(y[r])!r}: labels must be non-negative integer grades"
        )

    def line_of_value(at: int) -> int:  # the line of the row that holds x's stored value ``at`` (CSR)
        return line_of_row(path, int(np.searchsorted(x.indptr, at, side="right") - 1))

    if x.shape[1] > max(max_features, n_features or 0):
        raise ValueError(
            f"{path}:{line_of_value(int(np.argmax(x.indices)))}: feature index {x.shape[1]} is past the "
            f"bound of {max_features:,}"
        )
    bad_value = np.flatnonzero(~np.isfinite(x.data))
    if len(bad_value):
        raise ValueError(
            f"{path}:{line_of_value(int(bad_value[0]))}: a feature value is {float(x.data[bad_value[0]])!r}"
        )
    return RankData(np.asarray(x.todense(), dtype=np.float32), y.astype(np.int64), qid)
