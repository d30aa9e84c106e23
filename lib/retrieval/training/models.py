"""One way to save and load a trained torch model: ``state_dict.pt`` + ``config.json`` in a directory.

A model class that is saved this way names its config key and rebuilds itself from the config dict
(``CONFIG_KEY``, ``from_config``); its ``cfg`` has ``to_dict()``. Loading never unpickles: the weights
load with ``weights_only=True`` and the config is JSON. The directory is a path or any URI (each file
written atomically, the config last, so a directory with a config is complete).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from retrieval import storage


class SavedModel(Protocol):
    CONFIG_KEY: str
    cfg: Any

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


M = TypeVar("M")


def save_model(
    model: SavedModel,
    path_dir: str,
    extra: Mapping[str, Any] | None = None,
    parts: Mapping[str, Any] | None = None,
) -> None:
    """``state_dict.pt`` (+ ``<name>.pt`` for each module in ``parts``, e.g. a session pool) and
    ``config.json`` = ``{CONFIG_KEY: model.cfg.to_dict(), **extra}`` under ``path_dir``."""
    storage.write_torch_atomic(storage.join(path_dir, "state_dict.pt"), model.state_dict())
    for name, part in (parts or {}).items():
        storage.write_torch_atomic(storage.join(path_dir, f"{name}.pt"), part.state_dict())
    storage.write_json_atomic(
        storage.join(path_dir, "config.json"), {model.CONFIG_KEY: model.cfg.to_dict(), **(extra or {})}
    )


def load_model(cls: type[M], path_dir: str, map_location: str = "cpu") -> M:
    """The model saved by :func:`save_model` under ``path_dir``, rebuilt as ``cls`` from its config."""
    key: str = getattr(cls, "CONFIG_KEY")  # noqa: B009 - a Protocol attribute of the class
    model = cls.from_config(storage.read_json(storage.join(path_dir, "config.json"))[key])  # type: ignore[attr-defined]
    model.load_state_dict(storage.read_torch(storage.join(path_dir, "state_dict.pt"), map_location))
    return model


def saved_config(path_dir: str) -> dict[str, Any]:
    """The ``config.json`` of a saved model (its config and the extra fields it was saved with)."""
    data = storage.read_json(storage.join(path_dir, "config.json"))
    assert isinstance(data, dict)
    return data


def load_part(module: Any, path_dir: str, name: str, map_location: str = "cpu") -> bool:
    """Loads ``<name>.pt`` into ``module`` when the model was saved with that part; True if it was."""
    path = storage.join(path_dir, f"{name}.pt")
    if not storage.exists(path):
        return False
    module.load_state_dict(storage.read_torch(path, map_location))
    return True
