"""Model artifacts: ``<root>/models/<name>/<version>/`` (DESIGN.md).

Small models (a click model's curve, a quantizer's manifest) are one JSON file whose version is a hash
of its content, so the same fit always lands in the same place and a re-run does not pile up copies.

Torch models are weights-addressed: they train in a run directory ``models/<name>/runs/<config hash>/``
(its checkpoints are what a retry resumes), then :func:`publish_model` copies the final weights to
``models/<name>/<weights version>/``, whose version is a hash of the saved tensors, with the config,
data version and seed recorded beside them in ``config.json`` (written last: a directory with a
config is complete). Embeddings, indices and recs name that version, so they name the exact weights
that made them; a retrain that changes the weights makes a new version and never overwrites the old.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from retrieval import storage
from retrieval.commit import version_of


def content_version(payload: Any) -> str:
    """A 12-hex-digit version derived from the JSON content."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def model_dir(root: str, name: str, version: str) -> str:
    return storage.join(root, "models", name, version)


def run_dir(root: str, name: str, config_version: str) -> str:
    """Where a torch model of config ``config_version`` trains (checkpoints, the final save)."""
    return storage.join(root, "models", name, "runs", config_version)


def weights_version(path_dir: str) -> str:
    """``w`` + 12 hex digits of a hash over every tensor of every ``*.pt`` file of a saved model
    (names, dtypes, shapes and bytes, in sorted order): the same weights give the same version."""
    import torch

    h = hashlib.sha256()
    for f in storage.list_files(path_dir, ".pt"):
        h.update(f.rsplit("/", 1)[-1].encode())
        state = storage.read_torch(f)
        for key in sorted(state):
            value = state[key]
            h.update(key.encode())
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return "w" + h.hexdigest()[:12]


def publish_model(root: str, name: str, trained_dir: str, provenance: dict[str, Any]) -> tuple[str, str]:
    """Copies the model saved in ``trained_dir`` to ``models/<name>/<weights version>/`` with
    ``provenance`` (config, data version, seed) added to its config; returns (version, its directory).
    Publishing the same weights again finds them there and writes nothing."""
    from retrieval.training.models import saved_config

    version = weights_version(trained_dir)
    out = storage.absolute(model_dir(root, name, version))
    if not storage.exists(storage.join(out, "config.json")):
        for f in storage.list_files(trained_dir, ".pt"):
            storage.write_bytes_atomic(storage.join(out, f.rsplit("/", 1)[-1]), storage.read_bytes(f))
        published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        config = {
            **saved_config(trained_dir),
            "provenance": {**provenance, "trained_in": trained_dir, "published": published},
        }
        storage.write_json_atomic(storage.join(out, "config.json"), config)
    return version, out


def publish_towers(
    root: str, run: str, names: dict[str, str], provenance: dict[str, Any]
) -> dict[str, tuple[str, str]]:
    """Publishes the models one run trained side by side, ``<run>/<tower>/``, each under its model name
    (``names``: tower -> name), and applies retention to each: {tower: (version, directory)}."""
    out = {}
    for tower, name in names.items():
        out[tower] = publish_model(root, name, storage.join(run, tower), provenance)
        retain_models(root, name, {out[tower][0]}, {run})
    return out


PUBLISHED = "PUBLISHED"  # models/<name>/PUBLISHED: the versions the last two publishing stages made


def retain_models(root: str, name: str, versions: set[str], runs: set[str]) -> list[str]:
    """Retention of ``models/<name>/`` after a stage published ``versions`` from run directories
    ``runs``, like a table's (the committed version and the one before): keeps what this stage and the
    stage before it published (recorded in ``PUBLISHED``), every version a committed index names
    (``index``'s and ``visual_index``'s current and previous manifests: a query tower at serving time
    needs the weights that made the vectors), and this stage's run directories (the others'
    checkpoints, ~3x a model each, resume nothing any more). Returns what it removed."""
    base = storage.join(root, "models", name)
    fs, path = storage.filesystem(base)
    if not fs.exists(path):
        return []
    record = storage.join(base, PUBLISHED)
    try:
        last = storage.read_json(record)
        before, earlier = list(last.get("current", [])), list(last.get("previous", []))
    except (FileNotFoundError, ValueError, AttributeError):
        before, earlier = [], []
    if before == sorted(versions):  # the same weights published again: the generation before stays
        before = earlier
    storage.write_json_atomic(record, {"current": sorted(versions), "previous": before})
    keep = {*versions, *before, *models_in_use(root)}
    removed = [
        version_of(c)
        for c in fs.ls(path, detail=False)
        if version_of(c).startswith("w") and version_of(c) not in keep
    ]
    runs_path = storage.filesystem(storage.join(base, "runs"))[1]
    if fs.exists(runs_path):
        mine = {version_of(r) for r in runs}
        removed += [
            f"runs/{version_of(c)}" for c in fs.ls(runs_path, detail=False) if version_of(c) not in mine
        ]
    for rel in removed:
        storage.remove_tree(storage.join(base, rel))
    return removed


def models_in_use(root: str) -> set[str]:
    """The model versions that the committed (and previous) versions of the indices were built from."""
    from retrieval import commit
    from retrieval.index.shards import MANIFEST

    out = set()
    for index in ("index", "visual_index"):
        ptr = commit.read_pointer(commit.object_uri(root, index))
        for v in (ptr.version, ptr.previous) if ptr else ():
            try:
                manifest = storage.read_json(storage.join(commit.object_uri(root, index), v, MANIFEST))
            except (FileNotFoundError, ValueError):
                continue
            if isinstance(manifest, dict) and manifest.get("model_version"):
                out.add(str(manifest["model_version"]))
    return out


def save_json_model(root: str, name: str, payload: dict[str, Any], filename: str = "model.json") -> str:
    """Writes ``payload`` to ``models/<name>/<content version>/<filename>`` atomically; returns its URI."""
    uri = storage.join(model_dir(root, name, content_version(payload)), filename)
    storage.write_json_atomic(uri, payload)
    return uri


def encoder_dir(root: str, explicit: str = "") -> str:
    """The encoder a stage uses: ``explicit`` if given, else the one train_encoder's metrics name.

    Raises:
        FileNotFoundError: no encoder was trained under ``root``.
    """
    from retrieval.stage_metrics import read_stage_metrics

    if explicit:
        return explicit
    try:
        version = read_stage_metrics(root, "train_encoder")["training"]["model_version"]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no trained encoder under {root}: run train_encoder first (or name a model directory)"
        ) from None
    return model_dir(root, "encoder", version)


def visual_models(root: str) -> dict[str, str]:
    """{variant: model directory} of the image encoders train_visual trained last ({} when none)."""
    from retrieval.stage_metrics import read_stage_metrics

    try:
        return dict(read_stage_metrics(root, "train_visual").get("models", {}))
    except FileNotFoundError:
        return {}
