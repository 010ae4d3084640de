"""Shared test fixtures: the team's data folder (``../shared/data``) when it is there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip where it is absent (outside the team)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"team data folder {SHARED_DATA} is absent: this test needs the real radiographs")
    return SHARED_DATA


SAMPLES = REPO / "bundle" / "sample"


@pytest.fixture(scope="session")
def sample_images() -> list[Path]:
    """The redistributable sample radiographs shipped with the bundle (always present)."""
    return sorted(SAMPLES.glob("*.jpg"))
