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
from espcn_video.jobs.dask_cluster import TASK_RETRIES, describe_task_error, is_crash, open_client
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


def expand_inputs(inputs: list[str]) -> list[tuple[str, bool]]:
    """Files as given; a folder adds its video files, sorted by name, not its subfolders.

    Each name comes with whether a folder gave it (True) or it was named itself (False).
    """
    names: list[tuple[str, bool]] = []
    for name in inputs:
        path = Path(name)
        if not path.is_dir():
            names.append((name, False))
            continue
        videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise InputError(f"{name}: a folder without video files ({', '.join(sorted(VIDEO_EXTENSIONS))})")
        names.extend((str(p), True) for p in videos)
    seen: dict[Path, int] = {}
    unique: list[tuple[str, bool]] = []
    for name, from_folder in names:  # a file named twice, or also found in a folder, runs once
        key = Path(name).resolve()
        if key in seen:  # named itself wins: it is never taken for an earlier output
            first = seen[key]
            unique[first] = (unique[first][0], unique[first][1] and from_folder)
            continue
        seen[key] = len(unique)
        unique.append((name, from_folder))
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
    """Each input file, or each video file of an input folder, and the output name it gets in `out_dir`.

    A video file that a folder gave and whose name is the output name of another input (the
    output folder is also an input folder: an earlier run's output) is not an input: its input's
    line reports it. Every other one is, and is refused here, before any work, when its output
    would be itself or another input, or when two inputs would write the same output.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise OutputError(f"{out_dir}: no such folder")
    named = expand_inputs(inputs)
    for name, _ in named:
        if not Path(name).is_file():
            raise InputError(f"{name}: no such file or folder")
    outputs = [str(out / (Path(name).stem + suffix)) for name, _ in named]
    keys = [Path(name).resolve() for name, _ in named]
    out_keys = [Path(o).resolve() for o in outputs]
    makers: dict[Path, list[int]] = {}
    for j, key in enumerate(out_keys):
        makers.setdefault(key, []).append(j)
    state: dict[int, bool] = {}

    def is_earlier_output(i: int) -> bool:
        """From a folder, and the output name of another input (one that is not an earlier
        output itself: a.mp4 -> a_sr.mkv -> a_sr_sr.mkv leaves a_sr_sr.mkv an input)."""
        if i not in state:
            state[i] = False  # a cycle of names: an input
            state[i] = named[i][1] and any(j != i and not is_earlier_output(j) for j in makers.get(keys[i], []))
        return state[i]

    kept = [i for i in range(len(named)) if not is_earlier_output(i)]
    pairs = [(InputSpec(named[i][0]), outputs[i]) for i in kept]
    fix = "choose another --out-dir or --suffix"
    is_input = {keys[i]: named[i][0] for i in kept}
    selves = [i for i in kept if out_keys[i] == keys[i]]
    if selves:
        i, more = selves[0], len(selves) - 1
        also = f", as for {more} more input{'s' if more > 1 else ''}" if more else ""
        raise OutputError(
            f"{named[i][0]}: output is the input file (--out-dir {out_dir} with --suffix {suffix} "
            f"names it {outputs[i]}{also}); {fix}"
        )
    for i in kept:
        if out_keys[i] in is_input:
            raise OutputError(
                f"{named[i][0]}: its output {outputs[i]} is another input of this batch "
                f"({is_input[out_keys[i]]}) and would overwrite it; {fix}"
            )
    first_of: dict[Path, int] = {}
    for i in kept:
        if out_keys[i] in first_of:
            raise UsageError(
                f"{named[first_of[out_keys[i]]][0]} and {named[i][0]} would both write {outputs[i]}; {fix}"
            )
        first_of[out_keys[i]] = i
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


def _failed(settings: UpscaleSettings, exc: BaseException) -> dict[str, Any]:
    return {
        "input": settings.input.path,
        "output": settings.output,
        "status": "failed",
        "error": describe_task_error(exc),
    }


def _upscale_one(settings: UpscaleSettings, topic: str | None = None) -> dict[str, Any]:
    """The task: its file's record, "failed" with the error when the file cannot be upscaled.

    The project's own errors (an empty or damaged input, a preset that does not fit...) are the
    file's result, returned: raised, Dask would run the task again for the same error, and the
    worker would log its traceback each time. Only a crash (an ffmpeg killed by a signal) and
    an unexpected exception are raised, and retried.
    """
    from espcn_video.jobs.summary import run_summary
    from espcn_video.jobs.upscale import upscale_video

    try:
        outcome = upscale_video(settings, on_progress=TaskReporter(topic, settings.output))
    except EspcnVideoError as exc:
        if is_crash(exc):
            raise
        return _failed(settings, exc)
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
    A file whose task returns its error, raises (after its retries), or whose workers keep dying
    (KilledWorker), is one failed file: the loop goes on to the end so that the other files'
    results are never lost.
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
                    rec = _failed(s, exc)
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
