"""The files of a `batch`: folders expanded to their videos, outputs checked by frame count."""

from __future__ import annotations

from pathlib import Path

from espcn_video.errors import EspcnVideoError, InputError
from espcn_video.ffmpeg.timestamps import list_packets

# What a folder contributes; anything else in it (images, subtitles, notes) is left alone.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mkv",
        ".webm",
        ".mov",
        ".avi",
        ".wmv",
        ".flv",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".vob",
        ".ogv",
        ".3gp",
        ".nut",
        ".y4m",
    }
)


def expand_inputs(inputs: list[str], skip_suffix: str | None = None, skip_in: Path | None = None) -> list[str]:
    """Files as given; a folder adds its video files, sorted by name, not its subfolders.

    Files ending in `skip_suffix` inside the folder `skip_in` (the output folder) are earlier
    outputs, not inputs: without this, a second run over the same folder would upscale them.
    """
    names: list[str] = []
    for name in inputs:
        path = Path(name)
        if not path.is_dir():
            names.append(name)
            continue
        is_out_dir = skip_in is not None and path.resolve() == skip_in.resolve()
        videos = sorted(
            p
            for p in path.iterdir()
            if p.is_file()
            and p.suffix.lower() in VIDEO_EXTENSIONS
            and not (is_out_dir and skip_suffix and p.name.endswith(skip_suffix))
        )
        if not videos:
            raise InputError(f"{name}: a folder without video files ({', '.join(sorted(VIDEO_EXTENSIONS))})")
        names.extend(str(p) for p in videos)
    seen: set[Path] = set()
    unique = []
    for name in names:  # a file named twice, or also found in a folder, runs once
        key = Path(name).resolve()
        if key not in seen:
            seen.add(key)
            unique.append(name)
    return unique


def count_video_packets(ffmpeg: str, path: str) -> int | None:
    """Packets of the first video stream (one per frame), by demuxing only; None if ffmpeg fails.

    A file cut short by a crash shows fewer packets, and a file ffmpeg cannot open shows none.
    """
    try:
        return len(list_packets(ffmpeg, path, timeout_s=600.0)[1])
    except EspcnVideoError:
        return None


def output_is_complete(ffmpeg: str, source: str, output: str) -> tuple[bool, int | None]:
    """Whether `output` exists with as many video frames as `source` (and that count)."""
    if not Path(output).is_file():
        return False, None
    want = count_video_packets(ffmpeg, source)
    have = count_video_packets(ffmpeg, output)
    return (want is not None and want > 0 and have == want), have
