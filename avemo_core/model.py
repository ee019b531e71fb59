"""The cross-modal transformer: one set of weights for audio+visual, audio-only, visual-only input.

Audio (log-mel, x4 convolutional subsampling) and visual (a per-frame CNN on grey face crops) are
encoded into sequences of one width D with time-aligned positions, then cross-modal blocks let each
stream attend to itself and to the other. An absent modality is an absent stream: with `None` its
encoder never runs and cross-attention to it is skipped; a sample whose mask is all False gets its
cross-attention residual gated to exactly zero. So no zero-filled stand-in is ever fed, and the
output of a sample does not depend on the tensors of a modality it lacks, nor on padding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avemo_core.config import FrozenConfig, require
from avemo_core.data import Batch
from avemo_core.functionals import functionals_size, utterance_functionals
from avemo_core.labels import CONDITION_MODALITIES, CONDITIONS

# Time subsampling of the audio encoder's two stride-2 convolutions.
AUDIO_SUBSAMPLING = 4
AUDIO_NORMS = ("corpus", "speaker", "utterance")
# The norms that keep the training split's per-bin statistics (speaker: for unknown speakers).
CORPUS_STATISTICS_NORMS = ("corpus", "speaker")
AUDIO_FRONTENDS = ("conv1d", "conv2d")
POOLINGS = ("stats", "mean")
# split: functionals standardised by the training split's statistics; speaker: by each clip's
# speaker's (avemo_core/speakers.py), the split's where the speaker is unknown
FUNCTIONALS_NORMS = ("split", "speaker")
# Floor of a corpus standard deviation and of a pooled variance: keeps a constant bin finite.
_EPS = 1e-5

# Very small and fast on CPU: the unit tests' model.
_TINY: dict[str, object] = dict(
    d_model=32,
    num_heads=2,
    audio_layers=1,
    visual_layers=1,
    cross_layers=1,
    ff_mult=2,
    cnn_channels=8,
    dropout=0.0,
)

_SIZES: dict[str, dict[str, object]] = {
    "tiny": _TINY,
    # The real-speech recipe (`avemo train`'s default): tiny's width with dropout. On RAVDESS speech
    # (960 training clips) it matched or beat wider models on validation at a fraction of the cost.
    # With utterance functionals joined before the head: on RAVDESS speech, valid actors,
    # cross-fitted thresholds, 20 epochs, macro-F1 0.46 +- 0.01 against 0.40 +- 0.05 without
    # (the test actors stayed at 0.40). Standardised per speaker where the data name speakers:
    # five-fold cross-validation over actors 1-20 (40 epochs, one seed), valid macro-F1 with tuned
    # thresholds higher in every fold (docs/results_real_speech.md). The input log-mel is
    # z-scored per speaker as well: the same cross-validation, two seeds, valid macro-F1 with
    # thresholds and epoch chosen on two actors and scored on the other two, 0.551 against 0.533.
    # Three networks side by side (avemo_core/ensemble.py), at 3x the cost: the same nested score
    # 0.564 against 0.541 for one network (five folds; docs/results_real_speech.md).
    "small": dict(
        _TINY,
        dropout=0.1,
        utterance_functionals=True,
        functionals_norm="speaker",
        audio_norm="speaker",
        members=3,
    ),
    # Wider; for larger corpora. Still trainable on CPU.
    "base": {},
}
MODEL_SIZES = tuple(_SIZES)


@dataclasses.dataclass(frozen=True)
class ModelConfig(FrozenConfig):
    audio_dims: int = 80  # log-mel bins of the input
    visual_px: int = 64  # side of the square grey face crop
    num_labels: int = 6  # one logit per emotion
    d_model: int = 256  # width D of both streams
    num_heads: int = 4  # attention heads in every attention layer (divides d_model)
    audio_layers: int = 2  # self-attention layers of the audio encoder
    visual_layers: int = 2  # self-attention layers of the visual encoder
    cross_layers: int = 2  # cross-modal blocks (self-attn, cross-attn, feed-forward per stream)
    ff_mult: int = 4  # feed-forward hidden width = ff_mult * d_model
    cnn_channels: int = 32  # channels of the first per-frame CNN layer (then x2, x4, x4)
    dropout: float = 0.1  # dropout on attention weights, residual branches and before the head
    audio_hop_s: float = 0.01  # input audio frame step, so audio and visual positions align in time
    visual_fps: float = 5.0  # input visual frames per second, for the same alignment
    # corpus: per-bin log-mel mean/std of the training split (buffers set before training, saved
    # with the weights): keeps the loudness and spectral tilt that tell arousal apart;
    # speaker: each clip's speaker's per-bin mean/std where the batch has them (avemo_core/
    # speakers.py), else the corpus's: keeps what moves within a speaker, not who speaks;
    # utterance: each clip's own mean/variance (removes them)
    audio_norm: str = "corpus"
    pooling: str = "stats"  # stats: mean and std over time per stream; mean: mean only
    # conv1d: two convolutions over time with the mel bins as channels (a fixed spectral layout);
    # conv2d: three convolutions over (time, mel) whose kernels slide along the mel axis too, so a
    # pattern shifted by a speaker's pitch or vocal tract is the same pattern
    audio_frontend: str = "conv1d"
    audio_channels: int = 16  # channels of the first conv2d layer (then x2, x2)
    # statistics of the normalised log-mel over the clip (avemo_core.functionals), standardised
    # with training-split statistics and joined to the pooled audio state before the head
    utterance_functionals: bool = False
    # how the functionals are standardised (FUNCTIONALS_NORMS): speaker needs speaker statistics
    # in the batch (`Batch.functionals_centre`), else it falls back to the split's
    functionals_norm: str = "split"
    # independently initialised networks trained side by side, probabilities averaged
    # (avemo_core/ensemble.py); 1: a single network
    members: int = 1

    @property
    def uses_speakers(self) -> bool:
        """Whether the model standardises anything by its speaker's statistics (a SpeakerTable)."""
        return self.functionals_norm == "speaker" or self.audio_norm == "speaker"

    def validate(self) -> None:
        require(self.audio_dims > 0, "audio_dims must be > 0")
        require(self.visual_px >= 16, "visual_px must be >= 16 (four stride-2 convolutions)")
        require(self.num_labels > 0, "num_labels must be > 0")
        require(self.num_heads > 0, "num_heads must be > 0")
        require(
            self.d_model > 0 and self.d_model % self.num_heads == 0,
            "d_model must be a positive multiple of num_heads",
        )
        require(self.d_model % 2 == 0, "d_model must be even (sinusoidal positions)")
        require(
            min(self.audio_layers, self.visual_layers, self.cross_layers) >= 0,
            "layer counts must be >= 0",
        )
        require(self.ff_mult > 0, "ff_mult must be > 0")
        require(self.cnn_channels > 0, "cnn_channels must be > 0")
        require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        require(self.audio_hop_s > 0.0, "audio_hop_s must be > 0")
        require(self.visual_fps > 0.0, "visual_fps must be > 0")
        require(self.audio_norm in AUDIO_NORMS, f"audio_norm must be one of {AUDIO_NORMS}")
        require(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}")
        require(
            self.audio_frontend in AUDIO_FRONTENDS,
            f"audio_frontend must be one of {AUDIO_FRONTENDS}",
        )
        require(self.audio_channels > 0, "audio_channels must be > 0")
        require(self.members >= 1, "members must be >= 1")
        require(
            self.functionals_norm in FUNCTIONALS_NORMS,
            f"functionals_norm must be one of {FUNCTIONALS_NORMS}",
        )
        require(
            self.functionals_norm == "split" or self.utterance_functionals,
            "functionals_norm='speaker' needs utterance_functionals=True",
        )
        require(
            self.audio_norm != "speaker"
            or not self.utterance_functionals
            or self.functionals_norm == "speaker",
            "audio_norm='speaker' with utterance functionals needs functionals_norm='speaker'",
        )

    @classmethod
    def named(cls, size: str, **overrides: object) -> ModelConfig:
        """`tiny` (tests), `small` (the real-speech recipe) or `base`, with field overrides."""
        if size not in _SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {sorted(_SIZES)}")
        return cls(**{**_SIZES[size], **overrides})


@dataclasses.dataclass
class Encoded:
    seq: torch.Tensor  # (B, T', D)
    mask: (
        torch.Tensor
    )  # (B, T') bool, True on real steps; all False for a sample without this modality
    functionals: torch.Tensor | None = None  # (B, K) standardised utterance functionals, if used


def sinusoid(positions: torch.Tensor, dims: int) -> torch.Tensor:
    """(T,) float positions -> (T, dims) sinusoidal encodings (positions may be fractional)."""
    freqs = torch.exp(
        torch.arange(0, dims, 2, device=positions.device, dtype=torch.float32)
        * (-math.log(10000.0) / dims)
    )  # (dims / 2,)
    angles = positions.float()[:, None] * freqs[None, :]  # (T, dims / 2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (T, dims)


def masked_mean(seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D) mean over real steps; zeros for a sample with none."""
    weights = mask.to(seq.dtype)[..., None]  # (B, T, 1)
    return (seq * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_stats(seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, 2D): mean and standard deviation over real steps.

    How much a state varies over an utterance carries emotion that its mean alone loses.
    """
    weights = mask.to(seq.dtype)[..., None]  # (B, T, 1)
    mean = masked_mean(seq, mask)  # (B, D)
    var = (((seq - mean[:, None]) * weights) ** 2).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return torch.cat([mean, torch.sqrt(var + _EPS)], dim=-1)  # (B, 2D)


class Attention(nn.Module):
    """Multi-head attention of `x` over `context`, safe when a sample has no real key at all.

    Such a sample attends to all (padded) keys instead of none, so the softmax stays finite, and its
    output is then multiplied by zero: a residual branch adds exactly nothing for it.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor
    ) -> torch.Tensor:
        batch, t_query, d_model = x.shape
        t_key = context.shape[1]
        head = d_model // self.num_heads
        query = (
            self.query(x).view(batch, t_query, self.num_heads, head).transpose(1, 2)
        )  # (B, H, Tq, Dh)
        key, value = (
            self.key_value(context)
            .view(batch, t_key, 2, self.num_heads, head)
            .permute(2, 0, 3, 1, 4)
        )  # 2 x (B, H, Tk, Dh)
        has_keys = context_mask.any(dim=1)  # (B,)
        allowed = context_mask | ~has_keys[:, None]  # (B, Tk)
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=allowed[:, None, None, :],  # (B, 1, 1, Tk)
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, Tq, Dh)
        attended = attended.transpose(1, 2).reshape(batch, t_query, d_model)  # (B, Tq, D)
        return self.out(attended) * has_keys[:, None, None].to(attended.dtype)


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, mult: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(d_model, mult * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mult * d_model, d_model),
        )


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention to another stream, FF."""

    def __init__(self, config: ModelConfig, cross: bool) -> None:
        super().__init__()
        d, h, p = config.d_model, config.num_heads, config.dropout
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = Attention(d, h, p)
        self.cross = cross
        if cross:
            self.norm_cross = nn.LayerNorm(d)
            self.norm_context = nn.LayerNorm(d)
            self.cross_attn = Attention(d, h, p)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = FeedForward(d, config.ff_mult, p)
        self.drop = nn.Dropout(p)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, other: Encoded | None = None
    ) -> torch.Tensor:
        """`other` None: the other stream is absent and cross-attention is skipped."""
        normed = self.norm_self(x)
        x = x + self.drop(self.self_attn(normed, normed, mask))
        if self.cross and other is not None:
            context = self.norm_context(other.seq)
            x = x + self.drop(self.cross_attn(self.norm_cross(x), context, other.mask))
        return x + self.drop(self.ff(self.norm_ff(x)))


def _subsample_mask(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) prefix mask -> (B, steps) mask of a stride-2, kernel-3, padding-1 output in time."""
    lengths = mask.sum(dim=1)  # (B,)
    out_lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1  # 0 stays 0
    return torch.arange(steps, device=mask.device)[None, :] < out_lengths[:, None]  # (B, steps)


class FrameNorm(nn.Module):
    """Normalise each time step of a (B, C, T, F) map over its channels and bins, then an affine.

    Unlike BatchNorm or GroupNorm over the whole map, a frame's output depends on that frame alone:
    neither padding nor the rest of the batch moves it.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 3), keepdim=True)  # (B, 1, T, 1)
        var = x.var(dim=(1, 3), keepdim=True, unbiased=False)  # (B, 1, T, 1)
        return (x - mean) * torch.rsqrt(var + _EPS) * self.weight + self.bias


class Conv1dSubsampling(nn.Module):
    """Two stride-2 convolutions over time, mel bins as channels: (B, T, F) -> (B, T/4, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.conv1 = nn.Conv1d(config.audio_dims, d, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.gelu(self.conv1(x.transpose(1, 2)))  # (B, D, Ta / 2)
        mask = _subsample_mask(mask, x.shape[-1])
        x = x * mask[:, None, :].to(x.dtype)
        x = F.gelu(self.conv2(x))  # (B, D, Ta / 4)
        return x.transpose(1, 2), _subsample_mask(mask, x.shape[-1])  # (B, Ta / 4, D)


class Conv2dSubsampling(nn.Module):
    """Three 3x3 convolutions over (time, mel), stride 2 in mel each and in time twice (x4), each
    followed by `FrameNorm` and GELU; the (channels x remaining bins) of each step are projected
    to D. (B, T, F) -> (B, T/4, D).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.audio_channels
        widths = [1, c, 2 * c, 4 * c]
        self.time_strides = (2, 2, 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, stride=(t, 2), padding=1)
            for c_in, c_out, t in zip(widths[:-1], widths[1:], self.time_strides, strict=True)
        )
        self.norms = nn.ModuleList(FrameNorm(c_out) for c_out in widths[1:])
        bins = config.audio_dims
        for _ in self.convs:
            bins = (bins - 1) // 2 + 1  # stride 2, kernel 3, padding 1
        self.proj = nn.Linear(widths[-1] * bins, config.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x[:, None]  # (B, 1, Ta, F)
        for conv, norm, stride in zip(self.convs, self.norms, self.time_strides, strict=True):
            x = F.gelu(norm(conv(x)))  # (B, C, T', F')
            if stride == 2:
                mask = _subsample_mask(mask, x.shape[2])
            x = x * mask[:, None, :, None].to(x.dtype)  # padded steps back to exactly zero
        batch, channels, steps, bins = x.shape
        x = x.permute(0, 2, 1, 3).reshape(batch, steps, channels * bins)  # (B, Ta / 4, C F')
        return self.proj(x), mask  # (B, Ta / 4, D), (B, Ta / 4)


def _rename_pre_frontend_keys(
    module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: object
) -> None:
    """Checkpoints from before the front-end choice held the conv1d layers at `conv1`/`conv2` of
    the front end itself; they now sit in `subsample`. Renamed on load, so those still load."""
    for layer in ("conv1", "conv2"):
        for part in ("weight", "bias"):
            old = f"{prefix}{layer}.{part}"
            if old in state_dict:
                state_dict[f"{prefix}subsample.{layer}.{part}"] = state_dict.pop(old)


class AudioFrontEnd(nn.Module):
    """Feature normalisation (corpus, speaker or utterance), then x4 subsampling in time to width D.

    Corpus statistics are buffers (`audio_mean`, `audio_std`, (F,)): `set_normalisation` fills
    them from the training split, and they are saved and loaded with the weights, so inference
    normalises exactly as training did. A speaker-normalised model uses them for a clip whose
    speaker's statistics the batch lacks (NaN rows, or none at all). Padded frames are zeroed
    before each convolution, every norm works per frame, and the output length follows from the
    input length, so a padded sample gives exactly the steps of the unpadded one. Masks are
    prefixes (real frames first, padding after), as `collate` builds them.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm = config.audio_norm
        if self.norm in CORPUS_STATISTICS_NORMS:
            self.register_buffer("audio_mean", torch.zeros(config.audio_dims))
            self.register_buffer("audio_std", torch.ones(config.audio_dims))
        self.subsample = (
            Conv2dSubsampling(config)
            if config.audio_frontend == "conv2d"
            else Conv1dSubsampling(config)
        )
        self.register_load_state_dict_pre_hook(_rename_pre_frontend_keys)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store (F,) corpus mean and standard deviation (floored) for every later forward."""
        if self.norm not in CORPUS_STATISTICS_NORMS:
            raise ValueError("set_normalisation needs audio_norm='corpus' or 'speaker'")
        if mean.shape != self.audio_mean.shape or std.shape != self.audio_std.shape:
            raise ValueError(f"need ({self.audio_mean.shape[0]},) mean and std")
        self.audio_mean.copy_(mean)
        self.audio_std.copy_(std.clamp(min=_EPS))

    def normalise(
        self,
        audio: torch.Tensor,
        mask: torch.Tensor,
        centre: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, Ta, F) features -> normalised (B, Ta, F), zero on padded frames; (B, F) speaker
        `centre`/`scale` per clip, if any, for a speaker-normalised model."""
        weights = mask.to(audio.dtype)[..., None]  # (B, Ta, 1)
        if self.norm == "speaker" and centre is not None and scale is not None:
            unknown = torch.isnan(centre) | torch.isnan(scale)  # (B, F)
            centre = torch.where(unknown, self.audio_mean.expand_as(centre), centre)
            scale = torch.where(unknown, self.audio_std.expand_as(scale), scale)
            return (audio - centre[:, None]) / scale[:, None] * weights
        if self.norm in CORPUS_STATISTICS_NORMS:
            return (audio - self.audio_mean) / self.audio_std * weights
        count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1, 1)
        mean = (audio * weights).sum(dim=1, keepdim=True) / count  # (B, 1, F)
        var = (((audio - mean) * weights) ** 2).sum(dim=1, keepdim=True) / count  # (B, 1, F)
        return (audio - mean) * torch.rsqrt(var + _EPS) * weights  # (B, Ta, F)

    def forward(
        self,
        audio: torch.Tensor,
        mask: torch.Tensor,
        centre: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, Ta, F), (B, Ta) -> (B, Ta / 4, D), (B, Ta / 4), and the normalised (B, Ta, F)
        features (the utterance functionals are computed from those)."""
        normalised = self.normalise(audio, mask, centre, scale)
        return *self.subsample(normalised, mask), normalised


class FunctionalsHead(nn.Module):
    """Logits from the utterance functionals: standardised, then dropout and a linear map. Its
    logits add to the main head's, which is a linear head over both joined.

    The training split's mean and standard deviation are buffers saved with the weights, like the
    corpus normalisation. With `functionals_norm="speaker"` the functionals come from the
    unnormalised log-mel and each clip is standardised by its speaker's centre and scale where
    the batch has them (rows of NaN: unknown speaker, the buffers instead).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        size = functionals_size(config.audio_dims)
        self.register_buffer("functionals_mean", torch.zeros(size))
        self.register_buffer("functionals_std", torch.ones(size))
        self.drop = nn.Dropout(config.dropout)
        self.linear = nn.Linear(size, config.num_labels)

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store (K,) training-split mean and standard deviation of the functionals."""
        if mean.shape != self.functionals_mean.shape or std.shape != self.functionals_std.shape:
            raise ValueError(f"need ({self.functionals_mean.shape[0]},) mean and std")
        self.functionals_mean.copy_(mean)
        # A functional (almost) constant over the training split would blow up when standardised.
        self.functionals_std.copy_(std.clamp(min=1e-3))

    def standardise(
        self,
        functionals: torch.Tensor,
        centre: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, K) functionals -> standardised (B, K); (B, K) `centre`/`scale` per clip, if any."""
        if centre is None or scale is None:
            return (functionals - self.functionals_mean) / self.functionals_std
        unknown = torch.isnan(centre) | torch.isnan(scale)  # (B, K)
        centre = torch.where(unknown, self.functionals_mean.expand_as(centre), centre)
        scale = torch.where(unknown, self.functionals_std.expand_as(scale), scale)
        return (functionals - centre) / scale

    def forward(self, standard: torch.Tensor) -> torch.Tensor:
        """(B, K) standardised functionals -> (B, num_labels)."""
        return self.linear(self.drop(standard))


class FrameCNN(nn.Module):
    """A small CNN from one grey frame to a D vector: four stride-2 convolutions and global pooling.

    GroupNorm (not BatchNorm) keeps each frame's vector independent of the rest of the batch.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.cnn_channels
        widths = [1, c, 2 * c, 4 * c, 4 * c]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.GroupNorm(1, c_out),
                nn.GELU(),
            ]
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(4 * c, config.d_model)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W) in [0, 1] -> (N, D)."""
        x = self.convs(frames[:, None] - 0.5)  # (N, 4c, H / 16, W / 16)
        return self.proj(x.mean(dim=(2, 3)))  # (N, D)


class CrossModalTransformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_front = AudioFrontEnd(config)
        self.audio_encoder = nn.ModuleList(
            Block(config, cross=False) for _ in range(config.audio_layers)
        )
        self.frame_cnn = FrameCNN(config)
        self.visual_encoder = nn.ModuleList(
            Block(config, cross=False) for _ in range(config.visual_layers)
        )
        self.audio_cross = nn.ModuleList(
            Block(config, cross=True) for _ in range(config.cross_layers)
        )
        self.visual_cross = nn.ModuleList(
            Block(config, cross=True) for _ in range(config.cross_layers)
        )
        self.audio_norm = nn.LayerNorm(config.d_model)
        self.visual_norm = nn.LayerNorm(config.d_model)
        self.pool = masked_stats if config.pooling == "stats" else masked_mean
        pooled = 2 * config.d_model if config.pooling == "stats" else config.d_model
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(pooled, config.num_labels))
        self.functionals_head = FunctionalsHead(config) if config.utterance_functionals else None
        # Positions count subsampled audio steps: a visual frame sits at the audio step of its time.
        self.step_s = config.audio_hop_s * AUDIO_SUBSAMPLING

    def _positions(self, steps: int, step_s: float, device: torch.device) -> torch.Tensor:
        """(steps, D) encodings of steps `step_s` seconds apart."""
        times = torch.arange(steps, device=device, dtype=torch.float32) * (
            step_s / self.step_s
        )  # (T,)
        return sinusoid(times, self.config.d_model)

    def audio_functionals(
        self, audio: torch.Tensor, audio_mask: torch.Tensor, normalised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, Ta, F), (B, Ta) -> (B, K) utterance functionals as this model takes them, before
        standardising: of the normalised log-mel (given, or normalised here), or of the log-mel
        itself where each speaker standardises its own (`functionals_norm="speaker"`)."""
        if self.config.functionals_norm == "speaker":
            return utterance_functionals(audio, audio_mask)
        if normalised is None:
            normalised = self.audio_front.normalise(audio, audio_mask)
        return utterance_functionals(normalised, audio_mask)

    def encode_audio(
        self,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        functionals_centre: torch.Tensor | None = None,
        functionals_scale: torch.Tensor | None = None,
        audio_centre: torch.Tensor | None = None,
        audio_scale: torch.Tensor | None = None,
    ) -> Encoded:
        """(B, Ta, F), (B, Ta) -> Encoded (B, Ta', D); speaker statistics, if any: (B, K) for the
        functionals, (B, F) for the input (`Batch.functionals_centre`, `audio_centre`, ...)."""
        seq, mask, normalised = self.audio_front(audio, audio_mask, audio_centre, audio_scale)
        functionals = None
        if self.config.functionals_norm != "speaker":
            functionals_centre = functionals_scale = None  # speaker statistics are not for it
        if self.functionals_head is not None:
            functionals = self.functionals_head.standardise(
                self.audio_functionals(audio, audio_mask, normalised),  # (B, K)
                functionals_centre,
                functionals_scale,
            )
        seq = seq + self._positions(seq.shape[1], self.step_s, seq.device).to(seq.dtype)
        for block in self.audio_encoder:
            seq = block(seq, mask)
        return Encoded(seq=seq, mask=mask, functionals=functionals)

    def encode_batch_audio(self, batch: Batch) -> Encoded:
        """`encode_audio` of a batch's audio, with whatever speaker statistics it carries."""
        return self.encode_audio(
            batch.audio,
            batch.audio_mask,
            batch.functionals_centre,
            batch.functionals_scale,
            batch.audio_centre,
            batch.audio_scale,
        )

    def encode_visual(self, visual: torch.Tensor, visual_mask: torch.Tensor) -> Encoded:
        """(B, Tv, H, W), (B, Tv) -> Encoded (B, Tv, D). The CNN runs on real frames only."""
        batch, steps = visual_mask.shape
        feats = self.frame_cnn(visual[visual_mask])  # (N real frames, D)
        seq = feats.new_zeros(batch, steps, self.config.d_model)  # (B, Tv, D)
        seq[visual_mask] = feats
        seq = seq + self._positions(steps, 1.0 / self.config.visual_fps, seq.device).to(seq.dtype)
        for block in self.visual_encoder:
            seq = block(seq, visual_mask)
        return Encoded(seq=seq, mask=visual_mask)

    def fuse(self, audio: Encoded | None, visual: Encoded | None) -> torch.Tensor:
        """Cross-modal blocks, pooling, head -> (B, num_labels) logits; None: stream absent."""
        if audio is None and visual is None:
            raise ValueError("fuse needs at least one stream")
        a_seq = audio.seq if audio is not None else None
        v_seq = visual.seq if visual is not None else None
        for a_block, v_block in zip(self.audio_cross, self.visual_cross, strict=True):
            # Both streams read the other's state from before this layer.
            a_in = Encoded(a_seq, audio.mask) if audio is not None else None
            v_in = Encoded(v_seq, visual.mask) if visual is not None else None
            if audio is not None:
                a_seq = a_block(a_seq, audio.mask, v_in)
            if visual is not None:
                v_seq = v_block(v_seq, visual.mask, a_in)
        pooled: list[torch.Tensor] = []
        present: list[torch.Tensor] = []
        if audio is not None:
            pooled.append(self.pool(self.audio_norm(a_seq), audio.mask))  # (B, D) or (B, 2D)
            present.append(audio.mask.any(dim=1))  # (B,)
        if visual is not None:
            pooled.append(self.pool(self.visual_norm(v_seq), visual.mask))
            present.append(visual.mask.any(dim=1))
        weights = torch.stack(present, dim=1).to(pooled[0].dtype)  # (B, S)
        stacked = torch.stack(pooled, dim=1)  # (B, S, P): P = D, or 2D with stats pooling
        streams = weights.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
        summed = (stacked * weights[..., None]).sum(dim=1)  # (B, P)
        logits = self.head(summed / streams)  # (B, num_labels): head on the mean of present streams
        if (
            audio is not None
            and audio.functionals is not None
            and self.functionals_head is not None
        ):
            has_audio = audio.mask.any(dim=1, keepdim=True).to(logits.dtype)  # (B, 1)
            logits = logits + self.functionals_head(audio.functionals) * has_audio
        return logits

    def forward(
        self, batch: Batch, condition: str = "av", views: Sequence[str] | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Logits (B, num_labels) under condition `av`, `a` or `v`.

        With `views` (e.g. ("av", "a", "v")), `condition` is ignored and a dict condition -> logits
        comes back, every view computed from one encoding of each modality. Co-learning goes
        through here rather than calling `encode_*`/`fuse` itself so that a DistributedDataParallel
        wrapper, which only hooks `forward`, sees the whole step.
        """
        wanted = tuple(views) if views is not None else (condition,)
        unknown = [c for c in wanted if c not in CONDITIONS]
        if unknown or not wanted:
            raise ValueError(f"unknown condition(s) {unknown}; choose from {CONDITIONS}")
        use_audio = any(CONDITION_MODALITIES[c][0] for c in wanted)
        use_visual = any(CONDITION_MODALITIES[c][1] for c in wanted)
        audio = self.encode_batch_audio(batch) if use_audio else None
        visual = self.encode_visual(batch.visual, batch.visual_mask) if use_visual else None
        logits = {
            c: self.fuse(
                audio if CONDITION_MODALITIES[c][0] else None,
                visual if CONDITION_MODALITIES[c][1] else None,
            )
            for c in wanted
        }
        return logits if views is not None else logits[condition]
