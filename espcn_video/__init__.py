"""espcn-video: real-time ESPCN video super-resolution on the CPU, as an ffmpeg filter.

The public API (everything else is internal and may move)::

    from espcn_video import InputSpec, UpscaleSettings, upscale_video

    outcome = upscale_video(UpscaleSettings(InputSpec("in.mp4"), "out.mkv", preset="espcn-x3"))
    print(outcome.result.frames_written, outcome.check.frames)

Names load on first use, so `import espcn_video` (and `espcn-video --help`) stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "upscale_video": "espcn_video.jobs.upscale",
    "UpscaleOutcome": "espcn_video.jobs.upscale",
    "UpscaleSettings": "espcn_video.settings",
    "EncodeSettings": "espcn_video.settings",
    "InputSpec": "espcn_video.settings",
    "RawInput": "espcn_video.settings",
    "SUPPORTED_SCALES": "espcn_video.settings",
    "load_preset": "espcn_video.model.presets",
    "list_presets": "espcn_video.model.presets",
    "PresetInfo": "espcn_video.model.presets",
    "create_engine": "espcn_video.model.backends",
    "FrameUpscaler": "espcn_video.frames.upscaler",
    "EspcnVideoError": "espcn_video.errors",
    "UsageError": "espcn_video.errors",
    "InputError": "espcn_video.errors",
    "OutputError": "espcn_video.errors",
    "PresetError": "espcn_video.errors",
    "FFmpegError": "espcn_video.errors",
    "FFmpegNotFound": "espcn_video.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'espcn_video' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # the names as type checkers and IDEs see them
    from espcn_video.errors import (
        EspcnVideoError,
        FFmpegError,
        FFmpegNotFound,
        InputError,
        OutputError,
        PresetError,
        UsageError,
    )
    from espcn_video.frames.upscaler import FrameUpscaler
    from espcn_video.jobs.upscale import UpscaleOutcome, upscale_video
    from espcn_video.model.backends import create_engine
    from espcn_video.model.presets import PresetInfo, list_presets, load_preset
    from espcn_video.settings import SUPPORTED_SCALES, EncodeSettings, InputSpec, RawInput, UpscaleSettings
