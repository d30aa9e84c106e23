"""Carousels in Redis for serving: versioned keys, one alias, flipped atomically.

A marketplace serves a carousel from a key-value store, not from a parquet table. ``publish_recs``
loads the ``recs`` table into Redis under the table's committed version, checks that every row
arrived, and only then points the alias at it. Layout, for a namespace ``ns`` (``serving.namespace``):

- ``ns:v:<version>:<offer_id>``: the carousel, packed (:func:`pack`: the recommended offer ids as
  little-endian int64, then their scores as float32; 12 bytes a recommendation);
- ``ns:meta:<version>``: a hash written once the version is fully loaded (``rows``, ``loaded_at``);
- ``ns:current``: the live version; ``ns:previous``: the one before it (kept for a rollback).

Readers go through :meth:`RedisStore.get`, one server-side script that reads the alias and the
carousels in a single atomic step: a flip between two reads cannot hand a reader a carousel of one
version for one offer and of another for the next, or a key the flip's clean-up has just deleted.
Versions older than the previous ones (``serving.keep_versions``) are deleted after the flip.

One Redis (with its replicas): the script names keys it builds from the alias, which Redis Cluster
only allows when every key of a namespace hashes to one slot.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Reads the alias and the carousels of ARGV's offer ids in one atomic step (KEYS[1] the alias,
# KEYS[2] the carousel key prefix): {version or false, carousel or false, ...}.
_GET = """
local v = redis.call('GET', KEYS[1])
if not v then return {false} end
local out = {v}
for i, id in ipairs(ARGV) do out[i + 1] = redis.call('GET', KEYS[2] .. v .. ':' .. id) end
return out
"""
# Points the alias at ARGV[1] and keeps the old value as the previous one, atomically; the version must
# be fully loaded (its meta hash says so, and it is not being dropped). Returns the old version (false
# if none); an error otherwise.
_FLIP = """
if redis.call('HEXISTS', KEYS[3], 'rows') == 0 or redis.call('HEXISTS', KEYS[3], 'dropping') == 1 then
  return redis.error_reply('version not loaded: ' .. ARGV[1])
end
local old = redis.call('GET', KEYS[1])
if old == ARGV[1] then return old end
redis.call('SET', KEYS[1], ARGV[1])
if old then redis.call('SET', KEYS[2], old) end
return old
"""


def pack(ids: Sequence[int], scores: Sequence[float]) -> bytes:
    """A carousel as bytes: int64 ids then float32 scores, little-endian."""
    return np.asarray(ids, dtype="<i8").tobytes() + np.asarray(scores, dtype="<f4").tobytes()


def pack_recs(recs: Sequence[Mapping[str, Any]]) -> bytes:
    """A ``recs`` table cell (structs of offer_id, score) packed as :func:`pack` does."""
    return pack([r["offer_id"] for r in recs], [r["score"] for r in recs])


def unpack(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``pack``'s inverse: (ids int64 [k], scores float32 [k])."""
    if len(blob) % 12:
        raise ValueError(f"a packed carousel is 12 bytes a recommendation; got {len(blob)} bytes")
    k = len(blob) // 12
    return np.frombuffer(blob, dtype="<i8", count=k), np.frombuffer(blob, dtype="<f4", offset=8 * k)


@dataclass(frozen=True)
class Carousels:
    """What one read returns: the live version (None when nothing is published) and each asked offer's
    carousel as (ids, scores), None where the version holds none."""

    version: str | None
    recs: dict[int, tuple[np.ndarray, np.ndarray] | None]


def connect(url: str) -> Any:
    """A Redis client for ``url`` (``redis://host:port/db``); ConnectionError naming the url if it
    does not answer."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:
        raise ConnectionError(f"serving.redis_url {url}: Redis does not answer ({e})") from None
    return client


class RedisStore:
    """The serving store of one namespace (see the module's docstring for the layout)."""

    def __init__(self, client: Any, namespace: str) -> None:
        if not namespace or namespace.endswith(":"):
            raise ValueError(f"serving.namespace: a non-empty name without a trailing ':'; got {namespace!r}")
        self.client, self.ns = client, namespace
        self._get = client.register_script(_GET)
        self._flip = client.register_script(_FLIP)

    def key(self, version: str, offer_id: int) -> str:
        return f"{self.ns}:v:{version}:{int(offer_id)}"

    def load(self, version: str, rows: Iterable[tuple[int, bytes]], batch: int = 1000) -> int:
        """Writes carousels ``(offer_id, packed)`` of ``version`` in pipelined batches; returns how many.
        Idempotent: a retried task rewrites the same keys with the same values."""
        n, pipe = 0, self.client.pipeline(transaction=False)
        for offer_id, blob in rows:
            pipe.set(self.key(version, offer_id), blob)
            n += 1
            if n % batch == 0:
                pipe.execute()
        pipe.execute()
        return n

    def count(self, version: str, batch: int = 10_000) -> int:
        """Carousel keys of ``version`` in Redis (a SCAN: the check that every row arrived)."""
        return sum(1 for _ in self.client.scan_iter(match=f"{self.ns}:v:{version}:*", count=batch))

    def mark_loaded(self, version: str, rows: int) -> None:
        """Records that ``version`` holds all of its ``rows`` carousels: only then can it be flipped to."""
        meta = f"{self.ns}:meta:{version}"
        self.client.pipeline().hdel(meta, "dropping").hset(
            meta, mapping={"rows": rows, "loaded_at": time.time()}
        ).execute()

    def loaded(self, version: str) -> int | None:
        """The rows a fully loaded ``version`` holds, or None if it was never marked loaded."""
        rows, dropping = self.client.hmget(f"{self.ns}:meta:{version}", ["rows", "dropping"])
        return None if rows is None or dropping is not None else int(rows)

    def flip(self, version: str) -> str | None:
        """Points the alias at a loaded ``version`` (atomically); returns the version it replaced."""
        ns = self.ns
        old = self._flip(keys=[f"{ns}:current", f"{ns}:previous", f"{ns}:meta:{version}"], args=[version])
        return None if old is None else _text(old)

    def current(self) -> str | None:
        got = self.client.get(f"{self.ns}:current")
        return None if got is None else _text(got)

    def versions(self) -> list[str]:
        """Versions with a meta hash (loaded, or being dropped), oldest first by load time."""
        out = []
        for key in self.client.scan_iter(match=f"{self.ns}:meta:*"):
            name = _text(key)[len(f"{self.ns}:meta:") :]
            out.append((float(self.client.hget(key, "loaded_at") or 0), name))
        return [name for _, name in sorted(out)]

    def retain(self, keep: int, batch: int = 10_000) -> list[str]:
        """Deletes every version but the live one, the previous one and the ``keep - 2`` others loaded
        last, carousels and meta; returns the deleted ones."""
        live, previous = self.current(), self.client.get(f"{self.ns}:previous")
        kept = {v for v in (live, None if previous is None else _text(previous)) if v}
        others = [v for v in self.versions() if v not in kept]
        extra = max(0, keep - len(kept))
        doomed = others[: len(others) - extra] if extra else others
        for version in doomed:
            self.drop(version, batch)
        return doomed

    def drop(self, version: str, batch: int = 10_000) -> None:
        """Deletes a version that is not live: marked as being dropped first (so it can no longer be
        flipped to), then its carousels, then its meta, last: a drop cut short is still listed by
        :meth:`versions`, and the next :meth:`retain` finishes it."""
        meta = f"{self.ns}:meta:{version}"
        self.client.hset(meta, "dropping", 1)
        if version == self.current():  # after the mark: a flip to it from now on is refused
            self.client.hdel(meta, "dropping")
            raise ValueError(f"version {version} is live; flip to another before dropping it")
        keys: list[Any] = []
        for key in self.client.scan_iter(match=f"{self.ns}:v:{version}:*", count=batch):
            keys.append(key)
            if len(keys) >= batch:
                self.client.unlink(*keys)
                keys = []
        if keys:
            self.client.unlink(*keys)
        self.client.delete(meta)

    def get(self, offer_ids: Sequence[int]) -> Carousels:
        """The live version's carousels of ``offer_ids``, read in one atomic step with the alias."""
        got = self._get(keys=[f"{self.ns}:current", f"{self.ns}:v:"], args=[int(o) for o in offer_ids])
        if not got or got[0] is None:
            return Carousels(None, {int(o): None for o in offer_ids})
        return Carousels(
            _text(got[0]),
            {int(o): (None if b is None else unpack(b)) for o, b in zip(offer_ids, got[1:], strict=True)},
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
