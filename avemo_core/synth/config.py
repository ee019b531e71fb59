"""Settings of the synthetic corpus generator: size, seed, media format and mix of modalities."""

from __future__ import annotations

import dataclasses

from avemo_core.config import FrozenConfig, require


@dataclasses.dataclass(frozen=True)
class SynthConfig(FrozenConfig):
    clips: int = 48  # labelled segments in the corpus (rows of manifest.csv)
    seed: int = 0  # same seed and settings -> the same manifest and the same decoded media
    width_px: int = 160  # video frame width
    height_px: int = 120  # video frame height
    fps: int = 15  # video frame rate
    sample_rate_hz: int = 16000  # audio sample rate
    segment_min_s: float = 2.0  # shortest labelled segment
    segment_max_s: float = 4.0  # longest labelled segment
    segments_per_file_max: int = 3  # a media file holds 1..this many labelled segments (mostly 2+)
    clips_per_speaker: int = 8  # about clips / this many speakers (at least 3: one per split)
    valid_share: float = 0.15  # share of speakers whose media form the valid split
    test_share: float = 0.15  # share of speakers whose media form the test split
    secondary_share: float = 0.2  # chance that each other emotion co-occurs with a clip's main one
    # Multiplies every emotion's effect on every cue (noise unchanged): 1 is the calibrated corpus
    # (avemo_core/synth/cues.py); more makes emotions easier to tell apart, e.g. for a demo.
    cue_gain: float = 1.0
    video_only_share: float = 0.1  # share of media files without an audio track
    audio_only_share: float = 0.1  # share of media files without a video track
    video_crf: int = 23  # x264 constant rate factor (lower is better quality)
    audio_bitrate_kbps: int = 64  # AAC bitrate

    def validate(self) -> None:
        require(self.clips >= 1, "clips must be >= 1")
        require(self.seed >= 0, "seed must be >= 0")
        require(self.width_px >= 64 and self.width_px % 2 == 0, "width_px must be even and >= 64")
        require(
            self.height_px >= 64 and self.height_px % 2 == 0, "height_px must be even and >= 64"
        )
        require(1 <= self.fps <= 60, "fps must be in 1..60")
        require(8000 <= self.sample_rate_hz <= 48000, "sample_rate_hz must be in 8000..48000")
        require(1.0 <= self.segment_min_s <= self.segment_max_s, "need 1 <= segment_min_s <= max")
        require(self.segment_max_s <= 30.0, "segment_max_s must be <= 30")
        require(self.segments_per_file_max >= 1, "segments_per_file_max must be >= 1")
        require(self.clips_per_speaker >= 1, "clips_per_speaker must be >= 1")
        require(self.valid_share > 0.0 and self.test_share > 0.0, "split shares must be > 0")
        require(self.valid_share + self.test_share < 1.0, "valid_share + test_share must be < 1")
        require(0.0 <= self.secondary_share <= 1.0, "secondary_share must be in [0, 1]")
        require(0.0 < self.cue_gain <= 10.0, "cue_gain must be in (0, 10]")
        require(
            self.video_only_share >= 0.0
            and self.audio_only_share >= 0.0
            and self.video_only_share + self.audio_only_share < 1.0,
            "video_only_share and audio_only_share must be >= 0 and sum to < 1",
        )
        require(0 <= self.video_crf <= 51, "video_crf must be in 0..51")
        require(8 <= self.audio_bitrate_kbps <= 320, "audio_bitrate_kbps must be in 8..320")
