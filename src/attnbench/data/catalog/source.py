"""A data file as the catalogues describe it: path under the data directory, URL, digests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A data set file: its path under the data directory, download URL and accepted digests (sha256, or
    the publisher's md5 where that is all it gives; a file passes when either matches).

    Several digests are accepted where the same content circulates with CRLF and LF line endings.
    ``gz_sha256`` is set when the URL serves a gzip of the file (then checked before decompressing).
    """

    path: str
    url: str
    sha256: tuple[str, ...]
    gz_sha256: str | None = None
    md5: tuple[str, ...] = ()  # accepted md5 digests where the publisher gives md5 (MedMNIST's INFO)
    member: str | None = None  # the file's path inside the zip archive at ``url``
    builder: str | None = None  # the file is built from downloads by ``data.download.BUILDERS[builder]``


@dataclass(frozen=True)
class HubSource:
    """A data set on the Hugging Face Hub at a pinned revision (a commit sha): ``load_dataset(repo, config,
    revision=revision, split=...)``."""

    repo: str
    revision: str
    config: str | None = None

    def __str__(self) -> str:
        return f"{self.repo}" + (f" (config {self.config})" if self.config else "") + f" at revision {self.revision}"
