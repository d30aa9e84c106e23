"""Training-example feeds: parquet rows -> training batches (the encoder's pairs, the reranker's slates,
the image encoder's photo groups: the model's ``to_batch`` turns a table of rows into one batch).

Two feeds behind one interface (``epoch(e)`` yields batches; ``steps`` batches per epoch on every rank):

- :class:`ArrowFeed` reads the rank's share of the parquet files with pyarrow and shuffles rows in a
  seeded buffer. It needs nothing but pyarrow, so it also runs where Petastorm cannot be installed
  (Spark >= 4.1, numpy 2).
- :class:`PetastormFeed` reads through ``petastorm.make_batch_reader`` (row-group sharding by rank).

DDP hangs at the all-reduce if ranks run different numbers of steps, so both feeds stop every rank
after the same number of batches: the smallest rank's full batches (the remainder is dropped).
Both check how many rows they actually read: Petastorm has been seen to return 0 rows without an
error, and a silent empty epoch must fail loudly instead.

"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval import storage

Batcher = Callable[[pa.Table], Any]  # rows -> one training batch


def parquet_files(path: str) -> list[str]:
    """The data files of a parquet table directory (Spark's ``part-*``; a path or any URI), sorted."""
    files = storage.list_files(path, ".parquet")
    if not files:
        raise FileNotFoundError(f"no parquet files under {path}")
    return files


def parquet_file(uri: str) -> pq.ParquetFile:
    """One parquet file on any filesystem (each training process reads its share from storage)."""
    fs, path = storage.filesystem(uri)
    return pq.ParquetFile(path, filesystem=fs)


def _rebatch(
    tables: Iterator[pa.Table],
    batch_size: int,
    steps: int,
    rng: np.random.Generator | None,
    buffer_rows: int,
    to_batch: Batcher,
    bucket: Callable[[pa.Table], np.ndarray] | None = None,
) -> Iterator[Any]:
    """Cuts a stream of tables into at most ``steps`` batches of ``batch_size`` rows.

    Rows are shuffled within a buffer of about ``buffer_rows`` (when ``rng`` is given); a buffer's
    leftover rows join the next buffer. ``bucket`` (rows -> a size per row, e.g. a slate's length)
    groups rows of similar size into the same batch, batches then taken in random order: padded
    batches cost what their longest row costs.
    """
    buf: list[pa.Table] = []
    rows = emitted = 0

    def drain() -> Iterator[Any]:
        nonlocal buf, rows, emitted
        table = pa.concat_tables(buf)
        if rng is not None:
            table = table.take(pa.array(rng.permutation(table.num_rows)))
        full = table.num_rows // batch_size
        order = np.arange(full)
        if bucket is not None:
            head = table.slice(0, full * batch_size)  # the leftover rows stay a random sample
            by_size = np.argsort(bucket(head), kind="stable")
            table = pa.concat_tables([head.take(pa.array(by_size)), table.slice(full * batch_size)])
            if rng is not None:
                order = rng.permutation(full)
        for i in order[: steps - emitted]:
            yield to_batch(table.slice(int(i) * batch_size, batch_size))
            emitted += 1
        rest = table.slice(full * batch_size)
        buf, rows = ([rest] if rest.num_rows else []), rest.num_rows

    for t in tables:
        buf.append(t)
        rows += t.num_rows
        if rows >= buffer_rows:
            yield from drain()
        if emitted == steps:
            return
    if buf:
        yield from drain()


class _Feed:
    """What both feeds share: the same number of steps on every rank, and a check of what was read."""

    name = "feed"

    def __init__(
        self,
        path: str,
        batch_size: int,
        to_batch: Batcher,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        buffer_rows: int = 100_000,
        bucket: Callable[[pa.Table], np.ndarray] | None = None,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, world); got rank {rank} of {world}")
        self.path, self.batch_size, self.rank, self.world = path, batch_size, rank, world
        self.seed, self.shuffle, self.buffer_rows = seed, shuffle, buffer_rows
        self.to_batch = to_batch  # rows -> a training batch
        self.bucket = bucket  # rows -> sizes: batch rows of similar size together (see _rebatch)

    def _plan(self, per_rank: list[int], unit: str, path: str) -> None:
        if min(per_rank) == 0:
            raise ValueError(
                f"{len(per_rank)} ranks but some get no {unit} under {path}: write more partitions"
            )
        self.rows = per_rank[self.rank]
        self.steps = min(per_rank) // self.batch_size  # the same on every rank
        if self.steps == 0:
            raise ValueError(
                f"fewer than {self.batch_size} examples on some rank ({per_rank}): lower the batch size"
            )

    def _tables(self, epoch: int, rng: np.random.Generator | None) -> Iterator[pa.Table]:
        raise NotImplementedError

    def epoch(self, epoch: int) -> Iterator[Any]:
        """The rank's batches of one epoch: exactly ``steps`` of them, or a RuntimeError."""
        rng = np.random.default_rng([self.seed, epoch, self.rank]) if self.shuffle else None
        read = 0

        def counted() -> Iterator[pa.Table]:
            nonlocal read
            for t in self._tables(epoch, rng):
                read += t.num_rows
                yield t

        n = 0
        for b in _rebatch(
            counted(), self.batch_size, self.steps, rng, self.buffer_rows, self.to_batch, self.bucket
        ):
            n += 1
            yield b
        if n != self.steps:
            raise RuntimeError(
                f"{self.name} feed yielded {n} batches, expected {self.steps} (read {read} of {self.rows} rows)"
            )


class ArrowFeed(_Feed):
    """Parquet files split across ranks (file i goes to rank i % world), read with pyarrow."""

    name = "arrow"

    def __init__(self, path: str, batch_size: int, to_batch: Batcher, **kw: Any) -> None:
        super().__init__(path, batch_size, to_batch, **kw)
        files = parquet_files(path)
        if self.world > len(files):
            raise ValueError(
                f"{self.world} ranks but only {len(files)} parquet files under {path}: write more partitions"
            )
        self.files = files[self.rank :: self.world]
        per_rank = [
            sum(parquet_file(f).metadata.num_rows for f in files[r :: self.world]) for r in range(self.world)
        ]
        self._plan(per_rank, "files", path)

    def _tables(self, epoch: int, rng: np.random.Generator | None) -> Iterator[pa.Table]:
        order = rng.permutation(len(self.files)) if rng is not None else np.arange(len(self.files))
        for i in order:
            for rb in parquet_file(self.files[i]).iter_batches(batch_size=65536):
                yield pa.Table.from_batches([rb])


class PetastormFeed(_Feed):
    """The same examples through ``petastorm.make_batch_reader`` (row groups sharded across ranks).

    The synchronous ("dummy") reader pool is the default: the thread pool was seen to return 0 rows
    without an error under CPU load (3 of 8 round trips in a stress run on 2 cores).

    The reader is given the table's data files, never its directory: given a directory, Petastorm
    unpickles a schema from ``_common_metadata`` when one is there (its restricted unpickler lets
    ``builtins.eval`` through), so a file planted under the root would run code in training. Given
    files, it infers the schema from the parquet footers, which is our table contract's.
    """

    name = "petastorm"

    def __init__(
        self, path: str, batch_size: int, to_batch: Batcher, reader_pool_type: str = "dummy", **kw: Any
    ) -> None:
        super().__init__(path, batch_size, to_batch, **kw)
        self.urls = [storage.to_uri(f) for f in parquet_files(path)]
        self.reader_pool_type = reader_pool_type
        # Petastorm shards by row group: count each rank's rows the same way to size its epoch.
        metas = [parquet_file(f).metadata for f in parquet_files(path)]
        sizes = [m.row_group(g).num_rows for m in metas for g in range(m.num_row_groups)]
        self._plan([sum(sizes[r :: self.world]) for r in range(self.world)], "row groups", path)

    def _tables(self, epoch: int, rng: np.random.Generator | None) -> Iterator[pa.Table]:
        from petastorm import make_batch_reader

        # num_epochs=1: the reader loops forever otherwise
        with make_batch_reader(
            self.urls,  # files, not the directory: see the class's docstring
            num_epochs=1,
            cur_shard=self.rank,
            shard_count=self.world,
            shuffle_row_groups=self.shuffle,
            seed=self.seed + epoch,
            reader_pool_type=self.reader_pool_type,
            workers_count=1,
        ) as reader:
            for chunk in reader:
                yield pa.table({name: _column(getattr(chunk, name)) for name in chunk._fields})


FEEDS: dict[str, type[_Feed]] = {"arrow": ArrowFeed, "petastorm": PetastormFeed}  # = config.sections.Feed


def require_feed(kind: str) -> None:
    """Raises, naming the fix, when the feed ``kind`` cannot run in this environment.

    The default lane does not install Petastorm (it caps pyarrow at 14 and numpy below 2); only the
    Petastorm lane does (``scripts/setup_env.sh --petastorm``).
    """
    if kind not in FEEDS:
        raise ValueError(f"unknown feed {kind!r}; choose one of {sorted(FEEDS)}")
    if kind == "petastorm" and importlib.util.find_spec("petastorm") is None:
        raise RuntimeError(
            "training.feed=petastorm needs petastorm, which only the Petastorm lane installs: run "
            "scripts/setup_env.sh --petastorm, then RETRIEVAL_LANE=petastorm ./submit.sh ... "
            "(or keep training.feed=arrow, the default lane's feed)"
        )


def make_feed(kind: str, path: str, batch_size: int, to_batch: Batcher, **kw: Any) -> _Feed:
    """The feed a config names (``training.feed``: arrow | petastorm) over the parquet rows under ``path``."""
    require_feed(kind)
    return FEEDS[kind](path, batch_size, to_batch, **kw)


def _column(values: np.ndarray) -> pa.Array:
    """Petastorm gives fixed-length list columns as [n, L] arrays: back to an Arrow list array."""
    if values.ndim == 2:
        n, length = values.shape
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, n * length + 1, length, dtype=np.int32)), pa.array(values.reshape(-1))
        )
    return pa.array(values)
