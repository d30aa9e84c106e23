"""Paths as URIs, and atomic writes of small files (metrics, configs, manifests, models).

Every path in a config may be a plain local path or a URI (``file://``, ``hdfs://``, ``s3a://``, ``gs://``).
Tables are written by Spark through Hadoop filesystems (see ``spark_tables``); the small files here go
through fsspec, so the driver never needs a shared local disk with the executors. On object stores a
rename is a copy, so "atomic" there means "never a half-written file under the final name".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlparse

import fsspec


def is_local(uri: str) -> bool:
    """True for plain paths and ``file://`` URIs."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(uri: str) -> str:
    """``file:///a/b`` and ``file:/a/b`` -> ``/a/b``; plain paths are returned absolute.

    Raises:
        ValueError: a ``file:`` URI that names a host (``file://work/test`` is host ``work``, path
            ``/test``: almost always a relative path written as a URI by mistake).
    """
    if uri.startswith("file:"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(
                f"{uri}: a file URI names no host; write file:///absolute/path, or a plain (relative) path"
            )
        return parsed.path or "/"
    return os.path.abspath(uri)


def absolute(uri: str) -> str:
    """A path or URI that means the same on every node: local paths absolute, URIs as they are.

    Paths handed to executors or training processes go through this: their working directory is not
    the driver's."""
    return local_path(uri) if is_local(uri) else uri


def join(root: str, *parts: str) -> str:
    """Joins path parts onto a path or URI with ``/``.

    Raises:
        ValueError: a part with a ``..`` segment (a name from config must not lead out of ``root``).
    """
    out = root.rstrip("/")
    for p in parts:
        if ".." in p.replace("\\", "/").split("/"):
            raise ValueError(f"{p!r}: a name under {root} may not contain '..'")
        out = f"{out}/{p.strip('/')}"
    return out


def to_uri(path: str) -> str:
    """A fully qualified URI for Spark: local paths become absolute ``file://`` URIs."""
    if is_local(path):
        return "file://" + local_path(path)
    return path


def filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec filesystem, path on it) for a path or URI; local paths come back absolute."""
    if is_local(uri):
        return fsspec.filesystem("file"), local_path(uri)
    return fsspec.core.url_to_fs(uri)


def list_files(uri: str, suffix: str = "") -> list[str]:
    """The files directly under directory ``uri`` whose names end with ``suffix``, sorted, as paths or
    URIs like ``uri`` ([] when the directory does not exist). Hidden and temporary files are skipped."""
    fs, path = filesystem(uri)
    if not fs.exists(path):
        return []
    out = []
    for info in fs.ls(path, detail=True):
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        if info.get("type") == "file" and name.endswith(suffix) and not name.startswith((".", "_")):
            out.append(join(uri, name))
    return sorted(out)


def open_input(uri: str) -> IO[bytes]:
    """A binary file object to read ``uri`` from (the caller closes it)."""
    if is_local(uri):
        return open(local_path(uri), "rb")
    return fsspec.open(uri, "rb").open()


def remove_tree(uri: str) -> None:
    """Deletes a directory and everything under it, if it exists (any filesystem)."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write_torch_atomic(uri: str, obj: Any) -> None:
    """``torch.save(obj)`` to ``uri`` on any filesystem, atomically, streamed (a checkpoint is not held
    twice in memory)."""
    import torch

    with atomic_writer(uri) as f:
        torch.save(obj, f)


def read_torch(uri: str, map_location: Any = "cpu") -> Any:
    """``torch.load`` of ``uri`` (any filesystem) with ``weights_only=True``: tensors and plain data only."""
    import torch

    with open_input(uri) as f:
        return torch.load(f, map_location=map_location, weights_only=True)


def exists(uri: str) -> bool:
    if is_local(uri):
        return os.path.exists(local_path(uri))
    fs, p = fsspec.core.url_to_fs(uri)
    return bool(fs.exists(p))


def write_text_atomic(uri: str, text: str) -> None:
    """Writes ``text`` (UTF-8) to a temporary file beside ``uri``, then renames it over ``uri``."""
    write_bytes_atomic(uri, text.encode("utf-8"))


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Writes ``data`` to a temporary file beside ``uri``, then renames it over ``uri`` (any filesystem)."""
    with atomic_writer(uri) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_writer(uri: str) -> Iterator[IO[bytes]]:
    """A binary file to write ``uri`` through: a hidden temporary file beside it (``.tmp-*``, which
    listings skip), renamed over ``uri`` when the block ends, removed when it raises. Local files get
    the umask's mode (readable by the other users of a shared mount), not mkstemp's 0600."""
    if is_local(uri):
        path = local_path(uri)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return
    fs, p = fsspec.core.url_to_fs(uri)
    parent, name = p.rstrip("/").rsplit("/", 1) if "/" in p.rstrip("/") else ("", p)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{name}" if parent else f".tmp-{uuid.uuid4().hex}-{name}"
    try:
        with fs.open(tmp, "wb") as f:
            yield f
        fs.mv(tmp, p)
    except BaseException:
        with contextlib.suppress(Exception):
            if fs.exists(tmp):
                fs.rm(tmp)
        raise


def read_bytes(uri: str) -> bytes:
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            return f.read()
    with fsspec.open(uri, "rb") as f:
        return bytes(f.read())


def remove(uri: str) -> None:
    """Deletes a file if it exists."""
    if is_local(uri):
        if os.path.exists(local_path(uri)):
            os.remove(local_path(uri))
        return
    fs, p = fsspec.core.url_to_fs(uri)
    if fs.exists(p):
        fs.rm(p)


def read_text(uri: str) -> str:
    if is_local(uri):
        with open(local_path(uri), encoding="utf-8") as f:
            return f.read()
    with fsspec.open(uri, "r") as f:
        return str(f.read())


def write_json_atomic(uri: str, obj: Any) -> None:
    write_text_atomic(uri, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(uri: str) -> Any:
    return json.loads(read_text(uri))


def _json_default(o: Any) -> Any:
    # numpy scalars and arrays reach metrics often; convert rather than fail at the end of a long job.
    if hasattr(o, "item") and callable(o.item) and getattr(o, "ndim", 0) == 0:
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
