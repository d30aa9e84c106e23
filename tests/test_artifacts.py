from __future__ import annotations

import json
from pathlib import Path

from retrieval.artifacts import content_version, save_json_model


def test_same_content_same_version_and_place(tmp_path: Path) -> None:
    a = save_json_model(str(tmp_path), "m", {"x": [1, 2], "y": "z"})
    b = save_json_model(str(tmp_path), "m", {"y": "z", "x": [1, 2]})  # key order does not matter
    assert a == b and json.loads(Path(a).read_text()) == {"x": [1, 2], "y": "z"}
    assert content_version({"x": 1}) != content_version({"x": 2})
    assert Path(a).parent.parent == tmp_path / "models" / "m"
