"""Model artifacts: ``<root>/models/<name>/<version>/`` (DESIGN.md).

Small models (a click model's curve, a quantizer's manifest) are one JSON file whose version is a hash
of its content, so the same fit always lands in the same place and a re-run does not pile up copies.
Torch models add a ``state_dict`` beside their JSON config (loaded with ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from retrieval import storage


def content_version(payload: Any) -> str:
    """A 12-hex-digit version derived from the JSON content."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def model_dir(root: str, name: str, version: str) -> str:
    return storage.join(root, "models", name, version)


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
