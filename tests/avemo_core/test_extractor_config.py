"""The typed extractor config round-trips, rebuilds its extractor and refuses what it is not; the
one error record says where a partial decode stopped."""

from __future__ import annotations

import pytest

from avemo_core.config import ConfigError
from avemo_core.features.visual import VisualFeatureConfig
from avemo_core.media.clips import ClipConfig
from avemo_core.media.decode import PartialDecode
from avemo_core.media.errors import ErrorRecord, MediaError
from avemo_core.media.extractor_config import ExtractorConfig
from avemo_core.schema import media_id_for


def test_round_trip_rebuilds_the_same_extractor() -> None:
    config = ExtractorConfig(
        clip=ClipConfig(window_s=2.0), visual=VisualFeatureConfig(fps=3.0, detector="haar")
    )
    again = ExtractorConfig.from_dict(config.to_dict())
    assert again == config
    extractor = again.build()
    assert extractor.clip.window_s == 2.0 and extractor.visual.detector == "haar"
    assert extractor.config_dict() == config.to_dict()


def test_a_config_saved_before_audio_activity_gets_its_default_rule() -> None:
    saved = ExtractorConfig().to_dict()
    del saved["activity"]
    assert ExtractorConfig.from_dict(saved) == ExtractorConfig()


def test_unknown_or_missing_parts_are_refused() -> None:
    saved = ExtractorConfig().to_dict()
    with pytest.raises(ConfigError, match="unknown part"):
        ExtractorConfig.from_dict({**saved, "colour": {}})
    del saved["visual"]
    with pytest.raises(ConfigError, match="missing \\['visual'\\]"):
        ExtractorConfig.from_dict(saved)


def test_what_does_not_describe_an_extractor_falls_back_to_the_job_defaults() -> None:
    synthetic = {"source": "synthetic", "fps": 5.0}
    assert ExtractorConfig.saved_or_default(synthetic) == ExtractorConfig()
    changed = ExtractorConfig(clip=ClipConfig(window_s=4.0))
    assert ExtractorConfig.saved_or_default(changed.to_dict()) == changed


def test_error_records_name_the_file_and_where_a_partial_decode_stopped() -> None:
    record = ErrorRecord.of("a.mp4", MediaError("probe", "no_streams", "nothing")).to_dict()
    assert record == {
        "uri": "a.mp4",
        "media_id": media_id_for("a.mp4"),
        "stage": "probe",
        "kind": "no_streams",
        "message": "nothing",
    }
    partial = ErrorRecord.of("b.mkv", PartialDecode("truncated", "cut", 4.5)).to_dict()
    assert partial["stage"] == "decode" and partial["stopped_at_s"] == 4.5
    unexpected = ErrorRecord.unexpected("c.mp4", "decode", KeyError("x")).to_dict()
    assert unexpected["kind"] == "KeyError"
