"""What the PTB-XL data stages share: where the dataset lies (a folder or the package sample)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgtransfer.config import check

__all__ = ["ptbxl_root", "check_ptbxl_source"]


def ptbxl_root(config: Any) -> Path:
    """The PTB-XL folder a config names: ``root``, or the package's sample with ``sample``."""
    from ecgtransfer.data.ptbxl import sample_ptbxl_root

    return sample_ptbxl_root() if config.sample else Path(config.root)


def check_ptbxl_source(config: Any) -> None:
    """A PTB-XL stage needs ``root`` or ``sample``, not both."""
    check(not config.sample and not config.root, "root",
          "give a PTB-XL folder (--root DIR, root: DIR) or the package sample (--sample)")
    check(bool(config.sample and config.root), "sample", "give root or sample, not both")
