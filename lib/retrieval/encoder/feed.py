"""Training-example feeds for the encoder: parquet of (query offer, candidate offer) examples -> PairBatch.

Two feeds behind one interface (``epoch(e)`` yields batches; ``steps`` batches per epoch on every rank):

- :class:`ArrowFeed` reads the rank's share of the parquet files with pyarrow and shuffles rows in a
  seeded buffer. It needs nothing but pyarrow, so it also runs where Petastorm cannot be installed
  (Spark >= 4.1, numpy 2).
- :class:`PetastormFeed` reads through ``petastorm.make_batch_reader`` (row-group sharding by rank).

DDP hangs at the all-reduce if ranks run different numbers of steps, so both feeds stop every rank
after the same number of batches: the smallest rank's full batches (the remainder is dropped).
Both check how many rows they actually read: Petastorm has been seen to return 0 rows without an
error, and a silent empty epoch must fail loudly instead.

Example columns (written by ``spark_encoder.training_examples``): query_offer_id, item_offer_id,
log_q, and per side (prefix ``q_`` / ``c_``) word_ids, char_ids (list<int>), category,
price_bucket, seller, offer (int).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval import storage
from retrieval.encoder.features import OfferFeatures
from retrieval.encoder.train import PairBatch


def parquet_files(path: str) -> list[str]:
    """The data files of a parquet table directory (Spark's ``part-*``), sorted."""
    local = storage.local_path(path)
    files = sorted(glob.glob(os.path.join(local, "*.parquet")))
    if not files:
        raise FileNotFoundError(f"no parquet files under {path}")
    return files


def _side(table: pa.Table, prefix: str) -> OfferFeatures:
    def bag(name: str) -> np.ndarray:
        col = table.column(f"{prefix}{name}").combine_chunks()
        offsets = col.offsets.to_numpy()
        values = col.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
        return values.astype(np.int64).reshape(len(col), -1)  # fixed-length lists (padded by the featurizer)

    def ints(name: str) -> np.ndarray:
        return table.column(f"{prefix}{name}").to_numpy().astype(np.int64)

    return OfferFeatures(
        bag("word_ids"),
        bag("char_ids"),
        ints("category"),
        ints("price_bucket"),
        ints("seller"),
        ints("offer"),
    )


def batch_from_table(table: pa.Table) -> PairBatch:
    """One PairBatch from a table of examples (all its rows)."""
    return PairBatch(
        _side(table, "q_"),
        _side(table, "c_"),
        table.column("query_offer_id").to_numpy().astype(np.int64),
        table.column("item_offer_id").to_numpy().astype(np.int64),
        table.column("log_q").to_numpy().astype(np.float32),
    )


def _rebatch(
    tables: Iterator[pa.Table], batch_size: int, steps: int, rng: np.random.Generator | None, buffer_rows: int
) -> Iterator[PairBatch]:
    """Cuts a stream of tables into ``steps`` batches of ``batch_size`` rows, shuffling within a buffer."""
    pending: list[pa.Table] = []
    rows = 0
    emitted = 0

    def flush(buf: pa.Table) -> Iterator[pa.Table]:
        if rng is not None:
            buf = buf.take(pa.array(rng.permutation(buf.num_rows)))
        for lo in range(0, buf.num_rows, batch_size):
            yield buf.slice(lo, batch_size)

    carry = None
    for t in tables:
        pending.append(t)
        rows += t.num_rows
        if rows < buffer_rows:
            continue
        buf = pa.concat_tables(([carry] if carry is not None else []) + pending)
        pending, rows, carry = [], 0, None
        for part in flush(buf):
            if part.num_rows < batch_size:
                carry = part
                break
            if emitted == steps:
                return
            yield batch_from_table(part)
            emitted += 1
    rest = [carry] if carry is not None else []
    if pending or rest:
        for part in flush(pa.concat_tables(rest + pending)):
            if part.num_rows < batch_size or emitted == steps:
                return
            yield batch_from_table(part)
            emitted += 1


class ArrowFeed:
    """Parquet files split across ranks (file i goes to rank i % world), read with pyarrow."""

    def __init__(
        self,
        path: str,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        buffer_rows: int = 100_000,
    ) -> None:
        files = parquet_files(path)
        if world > len(files):
            raise ValueError(
                f"{world} ranks but only {len(files)} parquet files under {path}: write more partitions"
            )
        self.files = files[rank::world]
        self.batch_size, self.seed, self.rank, self.shuffle, self.buffer_rows = (
            batch_size,
            seed,
            rank,
            shuffle,
            buffer_rows,
        )
        per_rank = [sum(pq.ParquetFile(f).metadata.num_rows for f in files[r::world]) for r in range(world)]
        self.rows = per_rank[rank]
        self.steps = min(per_rank) // batch_size  # the same on every rank
        if self.steps == 0:
            raise ValueError(
                f"fewer than {batch_size} examples on some rank ({per_rank}): lower the batch size"
            )

    def epoch(self, epoch: int) -> Iterator[PairBatch]:
        rng = np.random.default_rng([self.seed, epoch, self.rank]) if self.shuffle else None
        order = rng.permutation(len(self.files)) if rng is not None else np.arange(len(self.files))
        read = 0

        def tables() -> Iterator[pa.Table]:
            nonlocal read
            for i in order:
                for rb in pq.ParquetFile(self.files[i]).iter_batches(batch_size=65536):
                    read += rb.num_rows
                    yield pa.Table.from_batches([rb])

        n = 0
        for b in _rebatch(tables(), self.batch_size, self.steps, rng, self.buffer_rows):
            n += 1
            yield b
        if n != self.steps:
            raise RuntimeError(
                f"arrow feed yielded {n} batches, expected {self.steps} (read {read} of {self.rows} rows)"
            )


class PetastormFeed:
    """The same examples through ``petastorm.make_batch_reader`` (row groups sharded across ranks).

    The synchronous ("dummy") reader pool is the default: the thread pool was seen to return 0 rows
    without an error under CPU load (3 of 8 round trips in a stress run on 2 cores).
    """

    def __init__(
        self,
        path: str,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        buffer_rows: int = 100_000,
        reader_pool_type: str = "dummy",
    ) -> None:
        self.url = storage.to_uri(path)
        files = parquet_files(path)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.shuffle, self.buffer_rows, self.reader_pool_type = shuffle, buffer_rows, reader_pool_type
        # Petastorm shards by row group: count each rank's rows the same way to size its epoch.
        groups = [pq.ParquetFile(f).metadata for f in files]
        sizes = [m.row_group(g).num_rows for m in groups for g in range(m.num_row_groups)]
        per_rank = [sum(sizes[r::world]) for r in range(world)]
        if min(per_rank) == 0:
            raise ValueError(
                f"{world} ranks but only {len(sizes)} row groups under {path}: write more partitions"
            )
        self.rows = per_rank[rank]
        self.steps = min(per_rank) // batch_size
        if self.steps == 0:
            raise ValueError(
                f"fewer than {batch_size} examples on some rank ({per_rank}): lower the batch size"
            )

    def epoch(self, epoch: int) -> Iterator[PairBatch]:
        from petastorm import make_batch_reader

        rng = np.random.default_rng([self.seed, epoch, self.rank]) if self.shuffle else None
        read = 0

        def tables() -> Iterator[pa.Table]:
            nonlocal read
            # num_epochs=1: the reader loops forever otherwise
            with make_batch_reader(
                self.url,
                num_epochs=1,
                cur_shard=self.rank,
                shard_count=self.world,
                shuffle_row_groups=self.shuffle,
                seed=self.seed + epoch,
                reader_pool_type=self.reader_pool_type,
                workers_count=1,
            ) as reader:
                for chunk in reader:
                    t = pa.table({name: _column(getattr(chunk, name)) for name in chunk._fields})
                    read += t.num_rows
                    yield t

        n = 0
        for b in _rebatch(tables(), self.batch_size, self.steps, rng, self.buffer_rows):
            n += 1
            yield b
        if n != self.steps:
            raise RuntimeError(
                f"petastorm feed yielded {n} batches, expected {self.steps} (read {read} of {self.rows} rows)"
            )


def _column(values: np.ndarray) -> pa.Array:
    """Petastorm gives fixed-length list columns as [n, L] arrays: back to an Arrow list array."""
    if values.ndim == 2:
        n, length = values.shape
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, n * length + 1, length, dtype=np.int32)), pa.array(values.reshape(-1))
        )
    return pa.array(values)
