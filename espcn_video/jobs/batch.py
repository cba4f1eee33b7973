"""The `batch` job: folders expanded to their videos, finished outputs (same frame count) skipped,
one Dask task per file, every file reported."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from espcn_video.errors import EspcnVideoError, InputError, OutputError, UsageError
from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.ffmpeg.timestamps import list_packets
from espcn_video.jobs.dask_cluster import TASK_RETRIES, describe_task_error, open_client
from espcn_video.jobs.task_progress import TaskProgress, TaskReporter, completed_while_ticking, new_topic
from espcn_video.settings import InputSpec, UpscaleSettings

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


def batch_jobs(inputs: list[str], out_dir: str, suffix: str) -> list[tuple[InputSpec, str]]:
    """Each input file, or each video file of an input folder, and the output name it gets in `out_dir`."""
    out = Path(out_dir)
    if not out.is_dir():
        raise OutputError(f"{out_dir}: no such folder")
    pairs = []
    for name in expand_inputs(inputs, skip_suffix=suffix, skip_in=out):
        path = Path(name)
        if not path.is_file():
            raise InputError(f"{name}: no such file or folder")
        pairs.append((InputSpec(name), str(out / (path.stem + suffix))))
    names = [p[1] for p in pairs]
    if len(set(names)) != len(names):
        raise UsageError("two inputs would write the same output name in --out-dir")
    return pairs


def find_done_outputs(pairs: list[tuple[InputSpec, str]]) -> tuple[list[dict[str, Any]], set[str]]:
    """Records of the outputs already complete (same video frame count as the input), and the
    outputs that exist but are not (to be redone over)."""
    ffmpeg = locate_ffmpeg().path
    done, partial = [], set()
    for spec, out in pairs:
        if not Path(out).exists():
            continue
        complete, frames = output_is_complete(ffmpeg, spec.path, out)
        if complete:
            done.append({"input": spec.path, "output": out, "status": "skipped", "frames": frames})
        else:
            partial.add(out)
    return done, partial


def estimated_frames(all_settings: list[UpscaleSettings]) -> int | None:
    """The files' frame counts from duration x rate (the probe's estimate), for a progress total;
    None when any file does not say."""
    from espcn_video.ffmpeg.probe import probe_file

    ffmpeg = locate_ffmpeg().path
    total = 0
    for s in all_settings:
        try:
            frames = probe_file(ffmpeg, s.input.path).estimated_frames()
        except EspcnVideoError:
            return None
        if frames is None:
            return None
        total += frames
    return total


def _upscale_one(settings: UpscaleSettings, topic: str | None = None) -> dict[str, Any]:
    from espcn_video.jobs.summary import run_summary
    from espcn_video.jobs.upscale import upscale_video

    outcome = upscale_video(settings, on_progress=TaskReporter(topic, settings.output))
    return {
        "input": settings.input.path,
        "output": settings.output,
        "preset": settings.preset,
        "status": "done",
        **run_summary(outcome.result),
        "notes": outcome.notes,  # what the run did beyond upscaling, as upscale says it
        **({"size_changes": [c.to_json() for c in outcome.size_changes]} if outcome.size_changes else {}),
    }


def run_batch(
    all_settings: list[UpscaleSettings],
    *,
    scheduler: str | None,
    local_workers: int,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One Dask task per file; every file is attempted and reported, failed ones with their error.

    Workers are checked first (inputs readable, output folders writable, ffmpeg, the package).
    A task that raises, or whose workers keep dying (KilledWorker), is one failed file: the
    loop goes on to the end so that the other files' results are never lost.
    """
    if not all_settings:
        return []
    results: list[dict[str, Any]] = []
    with open_client(scheduler, local_workers) as client:
        from espcn_video.jobs.preflight import check_workers

        out_dirs = sorted({str(Path(s.output).parent) for s in all_settings})
        check_workers(client, [s.input.path for s in all_settings], out_dirs)
        topic = new_topic() if on_progress is not None else None
        counts = TaskProgress(client, topic) if topic is not None else None
        running = {s.output for s in all_settings}
        frames_done = 0

        def tick() -> None:
            if on_progress is not None and counts is not None:
                on_progress(frames_done + counts.frames(running))

        futures = {client.submit(_upscale_one, s, topic, retries=TASK_RETRIES, pure=False): s for s in all_settings}
        try:
            for future in completed_while_ticking(list(futures), tick):
                s = futures[future]
                try:
                    rec = future.result()
                except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - recorded per file
                    rec = {
                        "input": s.input.path,
                        "output": s.output,
                        "status": "failed",
                        "error": describe_task_error(exc),
                    }
                results.append(rec)
                running.discard(s.output)
                frames_done += int(rec.get("frames") or 0)
                tick()
                if on_done:
                    on_done(rec)
        finally:
            if counts is not None:
                counts.close()
    order = {s.input.path: i for i, s in enumerate(all_settings)}
    return sorted(results, key=lambda r: order[r["input"]])
