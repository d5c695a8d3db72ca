"""What every benchmark result records about where it ran, and how it is written."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine() -> dict:
    """The machine of a result: cores, platform, torch version and threads."""
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def write_result(out, result: dict) -> None:
    """Write ``result`` as indented JSON to ``out`` (its folder created) and say where."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"written {out}")
