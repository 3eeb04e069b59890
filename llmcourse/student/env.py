"""Device pick, seeding and the PROFILE contract shared by every notebook."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

PROFILES = ("smoke", "default", "full")
DEVICES = ("auto", "cpu", "cuda", "mps")


def grading_mode() -> str | None:
    """'autograde' or 'validate' while nbgrader executes the notebook, else None."""
    return os.environ.get("NBGRADER_EXECUTION") or None


def resolve_profile(profile: str) -> str:
    """Check PROFILE and force 'smoke' under nbgrader grading/validation."""
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    if grading_mode():
        return "smoke"
    return profile


def pick_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' if available, else 'mps', else 'cpu'. An explicit choice is checked."""
    if device not in DEVICES:
        raise ValueError(f"DEVICE must be one of {DEVICES}, got {device!r}")
    try:
        import torch
    except ImportError:
        if device in ("auto", "cpu"):
            return "cpu"
        raise RuntimeError(f"DEVICE={device!r} needs PyTorch, which is not installed") from None
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if device == "cuda" and not cuda:
        raise RuntimeError("DEVICE='cuda' was asked for but torch.cuda.is_available() is False")
    if device == "mps" and not mps:
        raise RuntimeError("DEVICE='mps' was asked for but the MPS backend is not available")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if installed) PyTorch, and ask torch for deterministic kernels."""
    seed = int(seed)
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
    except ImportError:
        pass


@dataclass(frozen=True)
class Setup:
    profile: str
    device: str
    seed: int
    grading: str | None

    def pick(self, **by_profile):
        """Choose a value by profile: ``cfg.pick(smoke=200, default=2000, full=20000)``."""
        missing = [p for p in PROFILES if p not in by_profile]
        if missing:
            raise ValueError(f"pick() needs a value for every profile; missing {missing}")
        return by_profile[self.profile]

    def __str__(self) -> str:
        mode = f", grading={self.grading}" if self.grading else ""
        return f"profile={self.profile}, device={self.device}, seed={self.seed}{mode}"


def setup_notebook(profile: str = "default", device: str = "auto", seed: int = 0, *, plots: bool = True) -> Setup:
    """Validate the parameters cell, seed everything, pick the device, set plot defaults."""
    prof = resolve_profile(profile)
    dev = pick_device(device)
    seed_everything(seed)
    if plots:
        from .plotting import use_course_style
        use_course_style()
    return Setup(profile=prof, device=dev, seed=int(seed), grading=grading_mode())
