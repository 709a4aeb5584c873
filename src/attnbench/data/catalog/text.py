"""What a text classifier needs of any task, whichever catalogue it comes from (GLUE's tasks, IMDB)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextTask:
    """A text classification task as the classifier sees it: label names in class order (empty for a
    regression score) and the metrics it is scored with (their mean is the task's score)."""

    name: str
    labels: tuple[str, ...]
    metrics: tuple[str, ...]

    @property
    def n_labels(self) -> int:
        return len(self.labels) or 1  # 1 = regression
