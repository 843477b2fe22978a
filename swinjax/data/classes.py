"""Class subsets (``config.classes = "5,6,7"``): which classes a split keeps, and how their labels
are renumbered. One rule for every kind of split: the classes given, renumbered 0..k-1 in the
order given, their names kept (``(5, 9)``: label 5 -> 0, label 9 -> 1, every other dropped).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from swinjax.errors import ConfigError


def parse_classes(classes: str) -> tuple[int, ...]:
    """``"5,6,7"`` -> ``(5, 6, 7)``; ``""`` -> ``()``. :class:`ConfigError` for anything else."""
    try:
        parsed = tuple(int(c) for c in str(classes).replace(" ", "").split(",") if c != "")
    except ValueError:
        raise ConfigError(
            f"config.classes={classes!r}: give class indices separated by commas, e.g. '5,6,7'"
        ) from None
    if len(set(parsed)) != len(parsed) or any(c < 0 for c in parsed):
        raise ConfigError(f"config.classes={classes!r}: indices must be >= 0 and distinct")
    return parsed


@dataclasses.dataclass(frozen=True)
class ClassSubset:
    """The classes ``classes`` of a dataset of ``num_classes`` classes (checked in range)."""

    classes: tuple[int, ...]
    num_classes: int  # of the whole dataset
    split_name: str  # for the error message and :meth:`name`

    def __post_init__(self) -> None:
        bad = [c for c in self.classes if not 0 <= c < self.num_classes]
        if bad:
            raise ConfigError(
                f"config.classes: {bad} out of range; {self.split_name} has "
                f"{self.num_classes} classes (0..{self.num_classes - 1})"
            )

    @property
    def new_label_K(self) -> np.ndarray:
        """int32 [num_classes]: each old label's new one, -1 where the class is dropped."""
        table_K = np.full(self.num_classes, -1, np.int32)
        table_K[list(self.classes)] = np.arange(len(self.classes), dtype=np.int32)
        return table_K

    @property
    def name(self) -> str:
        """The subset's split name, e.g. ``cifar100:train{classes 5,9}``."""
        return f"{self.split_name}{{classes {','.join(map(str, self.classes))}}}"

    def class_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The kept classes' names, in the new order (``()`` where the dataset has none)."""
        return tuple(names[c] for c in self.classes) if names else ()
