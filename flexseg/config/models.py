"""Schemas of the `model` group: one dataclass per model of the zoo, each the common keys plus its own.

`ModelConfig` (flexseg.config.schemas) holds the keys every model takes; each zoo model subclasses it
with its own typed keys, and `conf/model/<name>.yaml` selects that schema through its defaults list
(`- base_<name>`, registered by `flexseg.config.store.register_configs`), as Hydra's structured-config
schema tutorial does. The root `Config` types `model` as `ModelConfig`, so OmegaConf merges the
chosen subclass in: `model=attention_unet model.gate_reduction=4` is typed, and a key the chosen model
lacks (`model=flexunet model.gate_reduction=4`, `model.bogus=1`) stops composition. No TensorFlow here.

Common keys a model does not use are named in its `conf/model/<name>.yaml` (e.g. deeplabv3plus has no
`num_layers`: its encoder has a fixed number of stages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from flexseg.config.choices import Choice
from flexseg.config.schemas import ModelConfig
from flexseg.errors import FlexsegError


class SharpenKernel(Choice):
    """`model.sharpen_kernel` of sharp_unet: the fixed depthwise filter on every skip connection."""

    laplacian = "laplacian"  # [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]], the Sharp U-Net paper's
    sharpen = "sharpen"  # [[0,-1,0],[-1,5,-1],[0,-1,0]]: identity plus a 4-neighbour Laplacian


class EfficientNetVariant(Choice):
    """`model.backbone` of efficient_unet: keras.applications.EfficientNetB0 ... B7."""

    b0 = "b0"
    b1 = "b1"
    b2 = "b2"
    b3 = "b3"
    b4 = "b4"
    b5 = "b5"
    b6 = "b6"
    b7 = "b7"


def _require(ok: bool, message: str) -> None:
    """Raise FlexsegError(message) unless `ok`."""
    if not ok:
        raise FlexsegError(message)


@dataclass
class ZooModelConfig(ModelConfig):
    """What every zoo schema adds to `ModelConfig`: its size rule and its own value checks."""

    def size_multiple(self) -> tuple[int, str]:
        """(n, why): image sizes and tiles must be multiples of n (`why` says where n comes from)."""
        return 2 ** (self.num_layers - 1), "2**(num_layers-1)"

    def check(self) -> None:
        """Raise FlexsegError naming a `model.` key whose value this model cannot take."""


@dataclass
class AttentionUNetConfig(ZooModelConfig):
    """Attention U-Net (Oktay 2018): a UNet whose skips pass through additive attention gates."""

    name: str = "attention_unet"
    # Inner channels of each attention gate: the level's filters // gate_reduction (paper: 2).
    gate_reduction: int = 2

    def check(self) -> None:
        _require(self.gate_reduction >= 1, f"model.gate_reduction={self.gate_reduction}; use 1 or more.")


@dataclass
class UNet3PlusConfig(ZooModelConfig):
    """UNet 3+ (Huang 2020): every decoder node sees every encoder scale (full-scale skips)."""

    name: str = "unet3plus"
    # Channels each scale contributes to a decoder node (paper: 64); None: base_filters.
    skip_filters: Optional[int] = None

    def check(self) -> None:
        _require(self.skip_filters is None or self.skip_filters >= 1,
                 f"model.skip_filters={self.skip_filters}; use 1 or more, or null for base_filters.")


@dataclass
class MultiResUNetConfig(ZooModelConfig):
    """MultiResUNet (Ibtehaz 2020): MultiRes blocks (chained 3x3 convs) and residual skip paths."""

    name: str = "multires_unet"
    # Width multiplier W = alpha * filters of a level, split 1/6, 1/3, 1/2 over the chained convs (paper 1.67).
    alpha: float = 1.67

    def check(self) -> None:
        _require(self.alpha > 0, f"model.alpha={self.alpha}; use a positive width multiplier (paper: 1.67).")


@dataclass
class SharpUNetConfig(ZooModelConfig):
    """Sharp U-Net (Zunair 2021): each skip is sharpened by a fixed depthwise filter before the concat."""

    name: str = "sharp_unet"
    sharpen_kernel: SharpenKernel = SharpenKernel.laplacian


@dataclass
class U2NetConfig(ZooModelConfig):
    """U^2-Net (Qin 2020): nested residual U-blocks (RSU), side outputs fused by a 1x1 conv.

    Stage i (of num_layers) is an RSU of height max(3, rsu_height - i); the last `dilated_stages`
    stages are RSU-4F (dilated, no pooling). Stage outputs have base_filters * 2**min(i, 3) channels
    and mid_filters * 2**min(i, 3) inside (paper: 7, 6, 5, 4, 4F, 4F; 64..512 out, 32..256 mid).
    """

    name: str = "u2net"
    mid_filters: int = 8
    rsu_height: int = 7
    dilated_stages: int = 1

    def rsu_heights(self) -> list[int]:
        """Height of each stage's RSU; 0 marks a dilated RSU-4F stage."""
        n = self.num_layers
        return [0 if i >= n - self.dilated_stages else max(3, self.rsu_height - i) for i in range(n)]

    def size_multiple(self) -> tuple[int, str]:
        steps = [2 ** (i + (h - 2 if h else 0)) for i, h in enumerate(self.rsu_heights())]
        return max(steps), "its pooling depth (from num_layers, rsu_height, dilated_stages)"

    def check(self) -> None:
        _require(self.mid_filters >= 1, f"model.mid_filters={self.mid_filters}; use 1 or more.")
        _require(self.rsu_height >= 3, f"model.rsu_height={self.rsu_height}; an RSU needs a height of 3 or more.")
        _require(0 <= self.dilated_stages < self.num_layers,
                 f"model.dilated_stages={self.dilated_stages}; use 0..num_layers-1 ({self.num_layers - 1}).")


@dataclass
class DeepLabV3PlusConfig(ZooModelConfig):
    """DeepLabV3+ (Chen 2018): a residual encoder with atrous convs, ASPP, and a light decoder.

    The encoder is a stem (stride 2) and 4 residual stages of base_filters * 2**(i+1) channels;
    stage 1's output (stride 4) feeds the decoder. `num_layers` is not used.
    """

    name: str = "deeplabv3plus"
    output_stride: int = 16  # 16 | 8: encoder stride; the deeper stages dilate instead
    aspp_rates: List[int] = field(default_factory=lambda: [6, 12, 18])  # at stride 16; doubled at 8
    aspp_filters: int = 64  # paper 256
    low_level_filters: int = 16  # projection of the stride-4 features (paper 48)
    blocks_per_stage: int = 2  # residual blocks per encoder stage

    def size_multiple(self) -> tuple[int, str]:
        return self.output_stride, "output_stride"

    def check(self) -> None:
        _require(self.output_stride in (8, 16), f"model.output_stride={self.output_stride}; use 16 or 8.")
        _require(len(self.aspp_rates) > 0 and all(r >= 1 for r in self.aspp_rates),
                 f"model.aspp_rates={list(self.aspp_rates)}; give one or more dilation rates >= 1, e.g. [6, 12, 18].")
        for key in ("aspp_filters", "low_level_filters", "blocks_per_stage"):
            _require(getattr(self, key) >= 1, f"model.{key}={getattr(self, key)}; use 1 or more.")


@dataclass
class SwinUNetConfig(ZooModelConfig):
    """Swin-UNet (Cao 2021): shifted-window transformer encoder/decoder on patches, patch merging/expanding.

    Stage i (of num_layers) has base_filters * 2**i channels and num_heads * 2**i heads; image sizes
    must be multiples of patch_size * 2**(num_layers-1) * window_size (so every stage tiles into
    windows, at any input size: no position embedding, a relative position bias per window).
    """

    name: str = "swin_unet"
    patch_size: int = 4
    window_size: int = 4
    num_heads: int = 2  # of stage 0
    blocks_per_stage: int = 2  # Swin blocks per stage (pairs of regular and shifted windows)
    mlp_ratio: float = 4.0

    def size_multiple(self) -> tuple[int, str]:
        step = self.patch_size * 2 ** (self.num_layers - 1) * self.window_size
        return step, "patch_size * 2**(num_layers-1) * window_size"

    def check(self) -> None:
        for key in ("patch_size", "window_size", "num_heads", "blocks_per_stage"):
            _require(getattr(self, key) >= 1, f"model.{key}={getattr(self, key)}; use 1 or more.")
        _require(self.base_filters % self.num_heads == 0,
                 f"model.base_filters={self.base_filters} (the embedding width) is not divisible by "
                 f"model.num_heads={self.num_heads}; each head takes base_filters / num_heads channels.")
        _require(self.mlp_ratio > 0, f"model.mlp_ratio={self.mlp_ratio}; use a positive ratio (paper: 4).")


@dataclass
class TransUNetConfig(ZooModelConfig):
    """TransUNet (Chen 2021): a CNN encoder, a ViT over its deepest feature map, a cascaded upsampler.

    The transformer sees the stride 2**(num_layers-1) features as tokens, with a learned position
    embedding of the training grid (bilinearly resized for another input size, as ViTs are).
    """

    name: str = "transunet"
    hidden_size: int = 128  # paper 768
    transformer_layers: int = 4  # paper 12
    num_heads: int = 4  # paper 12
    mlp_dim: int = 256  # paper 3072

    def check(self) -> None:
        for key in ("hidden_size", "transformer_layers", "num_heads", "mlp_dim"):
            _require(getattr(self, key) >= 1, f"model.{key}={getattr(self, key)}; use 1 or more.")
        _require(self.hidden_size % self.num_heads == 0,
                 f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads={self.num_heads}.")


@dataclass
class EfficientUNetConfig(ZooModelConfig):
    """A UNet decoder on a keras.applications EfficientNet encoder (5 stride-2 stages; `num_layers` unused).

    The decoder has base_filters * 2**(4-j) channels at its j-th upsampling; the encoder keeps its
    own BatchNorm and swish. Random initialisation unless `weights` names a local file.
    """

    name: str = "efficient_unet"
    backbone: EfficientNetVariant = EfficientNetVariant.b0
    # A local weights file of the EfficientNet (e.g. keras.applications' efficientnetb0_notop.h5, or a
    # .weights.h5 saved from keras.applications.EfficientNetB0(include_top=False)); matched by layer
    # name, layers whose shapes differ are skipped. Never downloaded. None: random initialisation.
    weights: Optional[str] = None

    def size_multiple(self) -> tuple[int, str]:
        return 32, "the EfficientNet encoder's total stride"


# model name -> schema (flexunet's is ModelConfig itself); conf/model/<name>.yaml exists for each.
MODEL_SCHEMAS: dict[str, type[ModelConfig]] = {
    "flexunet": ModelConfig,
    "attention_unet": AttentionUNetConfig,
    "unet3plus": UNet3PlusConfig,
    "multires_unet": MultiResUNetConfig,
    "sharp_unet": SharpUNetConfig,
    "u2net": U2NetConfig,
    "deeplabv3plus": DeepLabV3PlusConfig,
    "swin_unet": SwinUNetConfig,
    "transunet": TransUNetConfig,
    "efficient_unet": EfficientUNetConfig,
}


def compute_size_multiple(cfg: ModelConfig) -> tuple[int, str]:
    """(n, why): `model.image_*` and `tiling.tile_size` must be multiples of n for this model."""
    if isinstance(cfg, ZooModelConfig):
        return cfg.size_multiple()
    return 2 ** (cfg.num_layers - 1), "2**(num_layers-1)"


def check_model_config(cfg: ModelConfig) -> None:
    """The model's own value checks, and that `model.name` matches the schema its keys came from.

    Raises:
        FlexsegError: naming the `model.` key at fault.
    """
    schema = MODEL_SCHEMAS.get(cfg.name)
    if schema is not None and type(cfg) is not schema:
        chosen = next((n for n, s in MODEL_SCHEMAS.items() if s is type(cfg)), type(cfg).__name__)
        raise FlexsegError(
            f"model.name={cfg.name} but the model keys are those of {chosen}: choose a model with "
            f"model={cfg.name} (the config group), not by setting model.name."
        )
    if isinstance(cfg, ZooModelConfig):
        cfg.check()
