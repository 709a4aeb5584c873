"""MedMNIST v2, the 3D subsets (Yang et al., Scientific Data 2023): classes, split sizes, files and digests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from attnbench.data.catalog.source import Source

_ZENODO = "https://zenodo.org/records/10519652/files/"


@dataclass(frozen=True)
class VolumeSpec:
    """One MedMNIST3D data set (Yang et al., Scientific Data 2023): official splits in one ``.npz`` per size
    (``train/val/test_images`` (N, S, S, S) uint8, ``*_labels`` (N, 1)). URLs and md5 from medmnist 3.0.2's INFO."""

    name: str
    task: Literal["binary-class", "multi-class"]
    labels: tuple[str, ...]
    n_samples: tuple[int, int, int]  # train, val, test
    md5: dict  # size -> md5
    sha256: dict = field(default_factory=dict)  # size -> sha256, where we have measured it

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def source(self, size: int) -> Source:
        if size not in self.md5:
            raise ValueError(f"{self.name}: size {size} not released; allowed: {', '.join(map(str, self.md5))}")
        stem = self.name if size == 28 else f"{self.name}_{size}"
        sha = (self.sha256[size],) if size in self.sha256 else ()
        return Source(f"medmnist3d/{stem}.npz", f"{_ZENODO}{stem}.npz?download=1", sha, md5=(self.md5[size],))


_ORGANS = ("liver", "kidney-right", "kidney-left", "femur-right", "femur-left", "bladder", "heart", "lung-right",
           "lung-left", "spleen", "pancreas")

MEDMNIST3D: dict[str, VolumeSpec] = {
    s.name: s
    for s in [
        VolumeSpec("organmnist3d", "multi-class", _ORGANS, (971, 161, 610),
                   {28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"}),
        VolumeSpec("nodulemnist3d", "binary-class", ("benign", "malignant"), (1158, 165, 310),
                   {28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"}),
        VolumeSpec("adrenalmnist3d", "binary-class", ("normal", "hyperplasia"), (1188, 98, 298),
                   {28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"},
                   {64: "124a53ea2c66c8ac1985a4c98ea6f34d1ab35bdab1dc50947f80d4a87e54057d"}),
        VolumeSpec("fracturemnist3d", "multi-class",
                   ("buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"), (1027, 103, 240),
                   {28: "6aa7b0143a6b42da40027a9dda61302f", 64: "f01d7e6316aedf4210da0da5b7437b42"}),
        VolumeSpec("vesselmnist3d", "binary-class", ("vessel", "aneurysm"), (1335, 191, 382),
                   {28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"}),
        VolumeSpec("synapsemnist3d", "binary-class", ("inhibitory synapse", "excitatory synapse"), (1230, 177, 352),
                   {28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"}),
    ]
}


def volume_spec(name: str) -> VolumeSpec:
    """The MedMNIST3D entry ``name``; an unknown name lists the allowed ones."""
    if name not in MEDMNIST3D:
        raise ValueError(f"unknown MedMNIST3D data set {name!r}; allowed: {', '.join(MEDMNIST3D)}")
    return MEDMNIST3D[name]


def medmnist_files() -> dict[str, Source]:
    """Every MedMNIST3D file by its key (``organmnist3d`` = 28^3, ``organmnist3d_64`` = 64^3)."""
    return {(v.name if size == 28 else f"{v.name}_{size}"): v.source(size) for v in MEDMNIST3D.values()
            for size in v.md5}
