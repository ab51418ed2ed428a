"""3D ResNet-10 trunk used as the (concurrently trained) feature extractor of the perceptual loss."""

from __future__ import annotations

from torch import Tensor, nn

from bids_enhance.models._checks import check_int, check_widths
from bids_enhance.models.blocks import BasicBlock3d

__all__ = ["ResNet10Features"]


class ResNet10Features(nn.Module):
    """conv 7×7×7 stride 2 → BatchNorm → ReLU → max-pool 3 stride 2 → ``len(widths)`` layers of
    ``blocks_per_layer`` basic blocks (first layer stride 1, the others stride 2).

    With the defaults (``widths=(64, 128, 256, 512)``, one block per layer) this is the 3D
    ResNet-10 trunk of MedicalNet/MONAI without the classification head; attribute names follow
    torchvision (``conv1``, ``bn1``, ``layer1`` …). Randomly initialised.

    Input ``(B, in_channels, D, H, W)`` float; returns the list of the layers' feature maps
    (shallow to deep), layer ``k`` (1-based) with ``widths[k-1]`` channels at ``1/2^(k+1)`` of the
    input size (rounded up). The perceptual loss is the mean |FE(SR) − FE(HR)| over them. In
    training mode BatchNorm needs more than one value per channel (batch > 1 or a deep map > 1³).
    """

    def __init__(self, *, in_channels: int = 1, widths: tuple[int, ...] = (64, 128, 256, 512),
                 blocks_per_layer: int = 1) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        self.widths = check_widths("widths", widths)
        blocks_per_layer = check_int("blocks_per_layer", blocks_per_layer)
        self.conv1 = nn.Conv3d(in_channels, self.widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(self.widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        chans = self.widths[0]
        for i, width in enumerate(self.widths):
            blocks = []
            for j in range(blocks_per_layer):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock3d(chans, width, stride=stride))
                chans = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.ndim != 5:
            raise ValueError(
                f"ResNet10Features expects (B, C, D, H, W), got shape {tuple(x.shape)}")
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for i in range(len(self.widths)):
            h = getattr(self, f"layer{i + 1}")(h)
            features.append(h)
        return features
