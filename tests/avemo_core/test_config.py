"""FrozenConfig: dict round-trips, unknown keys refused, frozen, validated on every construction."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest

from avemo_core.config import ConfigError, FrozenConfig, require


@dataclasses.dataclass(frozen=True)
class WindowConfig(FrozenConfig):
    hop_s: float = 0.01  # step between frames
    sample_rate_hz: int = 16000  # input rate
    sizes_px: tuple[int, ...] = (32, 64)  # crop sides
    name: str = "fbank"  # registry name

    def validate(self) -> None:
        require(self.hop_s > 0, f"hop_s must be > 0, got {self.hop_s}")
        require(len(self.sizes_px) > 0, "sizes_px must not be empty")


def test_round_trip_through_json() -> None:
    config = WindowConfig(hop_s=0.02, sizes_px=(16,), name="mfcc")
    data = config.to_dict()
    assert data == {"hop_s": 0.02, "sample_rate_hz": 16000, "sizes_px": [16], "name": "mfcc"}
    rebuilt = WindowConfig.from_dict(json.loads(json.dumps(data)))
    assert rebuilt == config
    assert isinstance(rebuilt.sizes_px, tuple)
    assert hash(rebuilt) == hash(config)


def test_missing_keys_take_defaults() -> None:
    assert WindowConfig.from_dict({"hop_s": 0.5}) == WindowConfig(hop_s=0.5)


def test_unknown_keys_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"WindowConfig: unknown field\(s\) \['hop_ms'\]"):
        WindowConfig.from_dict({"hop_ms": 10})


def test_frozen() -> None:
    config = WindowConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hop_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "build",
    [
        lambda: WindowConfig(hop_s=0.0),
        lambda: WindowConfig.from_dict({"sizes_px": []}),
        lambda: WindowConfig().replace(hop_s=-1.0),
    ],
)
def test_validation_runs_on_every_construction(build) -> None:
    with pytest.raises(ConfigError, match="must"):
        build()


def test_replace_returns_a_new_validated_config() -> None:
    config = WindowConfig()
    changed = config.replace(sample_rate_hz=8000)
    assert changed.sample_rate_hz == 8000 and config.sample_rate_hz == 16000


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


SCALARS = (bool, int, float, str, type(None))


def all_subclasses(cls: type) -> list[type]:
    return [s for sub in cls.__subclasses__() for s in (sub, *all_subclasses(sub))]


def test_every_library_config_round_trips_from_its_defaults() -> None:
    for module in ("model", "colearning", "training", "features.audio", "features.visual"):
        importlib.import_module(f"avemo_core.{module}")
    configs = [c for c in all_subclasses(FrozenConfig) if c.__module__.startswith("avemo_core.")]
    assert len(configs) >= 5, configs
    # A config with a required field (e.g. PrepareConfig's corpus) is built from those examples.
    required = {"PrepareConfig": {"corpus": "ravdess"}}
    for cls in configs:
        config = cls(**required.get(cls.__name__, {}))
        data = json.loads(json.dumps(config.to_dict()))
        assert cls.from_dict(data) == config, cls.__name__
        values = [x for v in data.values() for x in (v if isinstance(v, list) else [v])]
        assert all(isinstance(x, SCALARS) for x in values), f"{cls.__name__} is not flat"
