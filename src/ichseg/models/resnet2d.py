"""A small, self-contained 2D ResNet (basic or bottleneck blocks) with GroupNorm/InstanceNorm,
configurable widths, any number of input channels and an output-stride option (dilation in the
late stages instead of striding, as DeepLabV3 needs). No torchvision, no pretrained weights.

Layout: stem (7x7 conv stride 2 -> norm -> ReLU -> 3x3 max-pool stride 2) then ``len(layers)``
stages; stage ``s`` has nominal stride ``4 * 2**s`` (4, 8, 16, 32). With ``output_stride=16`` the
fourth stage keeps stride 16 and uses dilation 2; with ``output_stride=8`` stages 3 and 4 use
dilation 2 and 4.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ichseg.errors import ConfigError
from ichseg.models.blocks import make_norm, run_checkpointed

BLOCK_KINDS: tuple[str, ...] = ("basic", "bottleneck")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, in_ch: int, width: int, stride: int = 1, dilation: int = 1, norm: str = "group"
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(
            in_ch, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.norm1 = make_norm(norm, width, 2)
        self.conv2 = nn.Conv2d(width, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = make_norm(norm, out_ch, 2)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), make_norm(norm, out_ch, 2)
            )

    @property
    def last_norm(self) -> nn.Module:
        return self.norm2

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) residual block (ResNet-50/101); stride on the 3x3."""

    expansion = 4

    def __init__(
        self, in_ch: int, width: int, stride: int = 1, dilation: int = 1, norm: str = "group"
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.norm1 = make_norm(norm, width, 2)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.norm2 = make_norm(norm, width, 2)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.norm3 = make_norm(norm, out_ch, 2)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), make_norm(norm, out_ch, 2)
            )

    @property
    def last_norm(self) -> nn.Module:
        return self.norm3

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.act(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return self.act(y + self.shortcut(x))


class ResNet2d(nn.Module):
    """ResNet trunk returning the output of every stage.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` (ResNet-18) or ``(3, 4, 6)`` (ResNet-50
            up to layer3).
        widths: base width per stage (output channels are ``width * expansion``).
        in_channels: input channels.
        stem_width: channels of the stem convolution (default ``widths[0]``).
        norm: ``"group"`` or ``"instance"``.
        output_stride: 8, 16 or 32: the largest stride reached; later stages are dilated.
        zero_init_residual: start every block as an identity (last norm weight = 0), which helps
            training from scratch.

    ``forward(x (N, in_channels, H, W))`` returns a list with one ``(N, C_s, H/s, W/s)`` map per
    stage (``C_s = out_channels[s]``). Set ``use_checkpoint = True`` to checkpoint each stage.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        in_channels: int,
        *,
        stem_width: int | None = None,
        norm: str = "group",
        output_stride: int = 32,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if block not in BLOCK_KINDS:
            raise ConfigError(f"unknown ResNet block {block!r}; expected one of {BLOCK_KINDS}")
        if len(layers) != len(widths) or not 1 <= len(layers) <= 4:
            raise ConfigError(
                f"ResNet layers {tuple(layers)} and widths {tuple(widths)} must have the same "
                "length (1 to 4 stages)"
            )
        if output_stride not in (8, 16, 32):
            raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if in_channels < 1 or any(w < 1 for w in widths) or any(n < 1 for n in layers):
            raise ConfigError("ResNet channel and layer counts must be positive")
        block_cls: type[BasicBlock] | type[Bottleneck] = (
            BasicBlock if block == "basic" else Bottleneck
        )
        stem_width = stem_width or widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False),
            make_norm(norm, stem_width, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        self.strides: list[int] = []
        in_ch, stride_now, dilation = stem_width, 4, 1
        for s, (n_blocks, width) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if s == 0 else 2
            if stride == 2 and stride_now * 2 > output_stride:
                dilation *= 2
                stride = 1
            stride_now *= stride
            blocks: list[nn.Module] = []
            for b in range(n_blocks):
                blocks.append(
                    block_cls(in_ch, width, stride if b == 0 else 1, dilation=dilation, norm=norm)
                )
                in_ch = width * block_cls.expansion
            self.stages.append(nn.Sequential(*blocks))
            self.out_channels.append(in_ch)
            self.strides.append(stride_now)
        self.use_checkpoint = False
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm | nn.InstanceNorm2d) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_norm.weight)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> list[Tensor]:
        feats: list[Tensor] = []
        y = self.stem(x)
        for stage in self.stages:
            y = run_checkpointed(stage, y, enabled=self.use_checkpoint)
            feats.append(y)
        return feats
