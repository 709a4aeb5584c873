"""3D volume classifiers: the HOT classifier (any attention of the registry over a depth x height x width
token tensor; ``full`` gives the ViT baseline of the same backbone) and MONAI's 3D ResNets.

HOT (Omranpour et al., arXiv:2412.02919; the official ``HOTFor3DClassification``):
x (B, C, S1, S2, S3) -> Conv3d(C -> E, kernel = stride = P) -> ReLU -> BatchNorm3d -> Dropout
-> tokens (B, S1/P, S2/P, S3/P, E), a 3-axis tensor -> n_layers pre-LN blocks (RoPE on all three axes)
-> LayerNorm of the mean over the three axes -> Dropout -> Linear(E -> n_classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai.networks.nets import resnet10, resnet18, resnet34, resnet50
from torch import Tensor, nn

from attnbench.layers.block import TensorBlock


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    t = (v, v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 3:
        raise ValueError(f"expected one size or three (D, H, W), got {v!r}")
    return t  # type: ignore[return-value]


class VolumeClassifier(nn.Module):
    """Patch-embedded 3D volume -> tensor blocks -> class logits. (B, C, S1, S2, S3) -> (B, n_classes)."""

    def __init__(
        self, img_size: int | Sequence[int], n_classes: int, attention: Mapping[str, Any], in_channels: int = 1,
        patch_size: int = 4, d_model: int = 128, n_heads: int = 8, n_layers: int = 4, d_mlp: int = 512,
        dropout: float = 0.1, qk_norm: bool = True, rope: bool = True, per_axis_qk: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = _triple(img_size)
        bad = [s for s in self.img_size if s % patch_size]
        if bad:
            raise ValueError(f"patch_size={patch_size} must divide every side of img_size={list(self.img_size)}")
        self.grid = tuple(s // patch_size for s in self.img_size)
        self.embed = nn.Conv3d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.embed_post = nn.Sequential(nn.ReLU(), nn.BatchNorm3d(d_model), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(
            TensorBlock(d_model, n_heads, d_mlp, n_axes=3, attention=attention, dropout=dropout, qk_norm=qk_norm,
                        rope_axes=(0, 1, 2) if rope else (), per_axis_qk=per_axis_qk)
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(f"input volume {tuple(x.shape[2:])} != img_size={list(self.img_size)}")
        h = self.embed_post(self.embed(x))  # (B, E, G1, G2, G3)
        h = h.permute(0, 2, 3, 4, 1)  # (B, G1, G2, G3, E): three token axes
        for blk in self.blocks:
            h = blk(h)
        h = self.ln_f(h.mean(dim=(1, 2, 3)))  # (B, E)
        return self.head(h)  # (B, n_classes)


_RESNETS = {10: resnet10, 18: resnet18, 34: resnet34, 50: resnet50}


def resnet3d(depth: int, n_classes: int, in_channels: int = 1, widen_factor: float = 1.0,
             conv1_kernel: int = 7, conv1_stride: int = 2, no_max_pool: bool = False) -> nn.Module:
    """MONAI's 3D ResNet (Hara et al. / MedicalNet layout; MedMNIST v2's "ResNet + 3D" baseline).

    conv1_kernel / conv1_stride / no_max_pool adapt the stem to small volumes (28^3: kernel 3, stride 1,
    no max-pool keeps a 7^3 map before the last stage).
    """
    if depth not in _RESNETS:
        raise ValueError(f"depth={depth}; allowed: {', '.join(map(str, _RESNETS))}")
    return _RESNETS[depth](spatial_dims=3, n_input_channels=in_channels, num_classes=n_classes,
                           widen_factor=widen_factor, conv1_t_size=conv1_kernel, conv1_t_stride=conv1_stride,
                           no_max_pool=no_max_pool, feed_forward=True)
