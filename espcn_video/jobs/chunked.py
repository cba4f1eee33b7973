"""Chunked, resumable upscaling on Dask distributed, built on the same pipeline as `upscale`.

The driver plans frame-exact chunks from packet timestamps, submits one task per missing chunk
(Dask retries a task that raises and reschedules one whose worker died), records each finished
chunk in a manifest beside OUT, joins the parts once with the concat demuxer and muxes the
source's audio, subtitles and metadata in. A part is written under a temporary name and renamed
only after its frame count matched the plan, so a part on disk is always whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from espcn_video.errors import EspcnVideoError, FrameCountMismatch, InputError, OutputError, UsageError
from espcn_video.ffmpeg.args import (
    OutputVideo,
    build_encode_args,
    build_join_args,
    is_image_output,
    resolve_codec,
)
from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.ffmpeg.mkv import build_hdr_colour
from espcn_video.ffmpeg.probe import ProbeInfo, probe_file
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.timestamps import list_packets as list_file_packets
from espcn_video.ffmpeg.y4m import Y4MHeader, decode_all
from espcn_video.files import atomic_write_text
from espcn_video.frames.pipeline import run_pipeline
from espcn_video.frames.sinks import encoder_sink
from espcn_video.frames.upscaler import FrameUpscaler
from espcn_video.jobs.chunk_plan import (
    SEEK_MARGIN_S,
    Chunk,
    ChunkPlan,
    build_chunk_decode_args,
    list_packets,
    plan_chunks,
)
from espcn_video.jobs.dask_cluster import TASK_RETRIES, open_client
from espcn_video.jobs.inputs import (
    SizeChange,
    check_input,
    check_probed,
    choose_deinterlace,
    describe_input,
    first_frame_size,
    look_at_size_changes,
    output_video_for,
    size_change_note,
    source_filters,
)
from espcn_video.jobs.outputs import (
    check_output,
    check_output_format,
    discard_temporary,
    extract_covers,
    publish,
    sweep_stale_temporaries,
    temporary_output,
    verify_output,
)
from espcn_video.jobs.task_progress import TaskProgress, TaskReporter, completed_while_ticking, new_topic
from espcn_video.model.backends import create_engine
from espcn_video.model.engines import default_threads
from espcn_video.model.external import is_external_model
from espcn_video.model.presets import int8_params, load_preset, precision_deltas
from espcn_video.settings import EncodeSettings, UpscaleSettings

log = logging.getLogger(__name__)
PART_FORMAT = "nut"  # carries any codec, rawvideo included, and concatenates cleanly


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs; plain data so it pickles to any machine with the package."""

    source: str
    plan: ChunkPlan
    chunk: Chunk
    preset: str
    encode: EncodeSettings
    probe: ProbeInfo  # the driver's, first frame included: colour, siting, HDR, time base
    part_path: str
    threads: int | None
    backend: str = "auto"
    precision: str = "auto"
    deinterlace: str | None = None
    progress_topic: str | None = None  # Dask event topic for frame counts while it runs


@dataclass
class ChunkedOutcome:
    plan: ChunkPlan
    frames: int
    wall_s: float
    chunks_run: list[int] = field(default_factory=list)
    chunks_reused: list[int] = field(default_factory=list)
    workers: int = 0
    notes: list[str] = field(default_factory=list)
    size_changes: list[SizeChange] = field(default_factory=list)


def process_chunk(job: ChunkJob) -> dict[str, Any]:
    """Run one chunk through the pipeline into its part file (the Dask task)."""
    t0 = time.perf_counter()
    ffmpeg = locate_ffmpeg()
    model, preset = load_preset(job.preset)
    probe = job.probe
    siting = probe.frame.chroma_location if probe.frame is not None else None
    upscaler = FrameUpscaler(
        preset.scale,
        create_engine(
            model,
            backend=job.backend,
            precision=job.precision,
            threads=job.threads,
            int8=int8_params(model, preset),
            deltas=precision_deltas(preset),
        ),
        siting,
    )
    final = Path(job.part_path)
    tmp = final.with_name(f".{final.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}.{PART_FORMAT}")
    codec = job.encode.codec
    assert codec is not None, "upscale_chunked resolves the parts' codec"
    frame = probe.frame
    video_elements = build_hdr_colour(frame.mastering, frame.content_light) if frame is not None else b""

    def build_encoder(header: Y4MHeader) -> list[str]:
        video, _ = output_video_for(header, preset.scale, codec, probe, siting, job.deinterlace)
        return build_encode_args(ffmpeg.path, str(tmp), job.encode, video=video, timed=True)

    reporter = TaskReporter(job.progress_topic, str(job.chunk.index))
    filters, size = source_filters(probe, job.deinterlace), first_frame_size(probe)
    edges = chunk_edges(ffmpeg.path, job, filters, size) if upscaler.frames > 1 else None
    try:
        frames = -1
        # A container seek may overshoot (MPEG-TS seeks by bytes): then decode from the start.
        for margin in (SEEK_MARGIN_S, math.inf):
            decode = build_chunk_decode_args(
                ffmpeg.path,
                job.source,
                job.plan,
                job.chunk,
                margin,
                filters,
                size,
            )
            # After a seek the decoder may complain about references it never saw; the frame
            # count check below is what proves the chunk whole. -copyts keeps the file's own
            # timestamps: take off its start as an unchunked decode does.
            result = run_pipeline(
                decode,
                encoder_sink(build_encoder, timed=True, video_elements=video_elements),
                upscaler,
                strict_decode=False,
                timed=True,
                time_offset_us=round(job.plan.container_start_s * 1_000_000),
                on_progress=reporter,
                edges=edges,
            )
            frames = result.frames_written
            if frames == job.chunk.frames:
                break
        if frames != job.chunk.frames:
            raise FrameCountMismatch(job.chunk.frames, frames)
        start = part_start(ffmpeg.path, tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    times = result.frame_times
    assert times is not None
    return {
        "index": job.chunk.index,
        "frames": frames,
        "bytes": final.stat().st_size,
        "wall_s": round(time.perf_counter() - t0, 3),
        "start_s": str(start),  # the part's first frame time in its own file (exact), for the join
        # the source's frame size as rawvideo bytes at both ends, and where it changed inside
        "frame_bytes": [times.first_bytes, times.last_bytes],
        "size_changes": [list(change) for change in times.change_times()],
    }


def part_start(ffmpeg: str, part: Path) -> Fraction:
    """The time of a part's first frame in the part file, in seconds, from its packets.

    The join tells the concat demuxer this (`inpoint`) instead of letting it guess: for an H.264
    part of a few frames without B-frames (under 8; any short chunk, or every chunk of an
    encoder preset without B-frames) ffmpeg leaves the file's start time unset, the demuxer
    then takes 0 for it, and the part landed its own start time too late in the joined file.
    """
    tb, pts, _ = list_file_packets(ffmpeg, str(part), timeout_s=600.0)
    if not pts:
        raise OutputError(f"{part}: the part holds no video packets")
    return min(pts) * tb


def chunk_edges(
    ffmpeg: str, job: ChunkJob, filters: list[str], size: tuple[int, int] | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The LR Y of the frames just before and just after a chunk (None at the stream's ends),
    decoded as the chunk itself is: a multi-frame preset reads them as the neighbours of the
    chunk's first and last frame, so that every frame is made as in an unchunked run."""
    chunk = job.chunk
    before = after = None
    if chunk.before_pts is not None:
        before = _decode_one(ffmpeg, job, Chunk(-1, chunk.before_pts, chunk.start_pts, 1), filters, size, last=True)
    if chunk.end_pts is not None:
        after = _decode_one(ffmpeg, job, Chunk(-1, chunk.end_pts, chunk.after_end_pts, 1), filters, size, last=False)
    return before, after


def _decode_one(
    ffmpeg: str, job: ChunkJob, span: Chunk, filters: list[str], size: tuple[int, int] | None, *, last: bool
) -> np.ndarray:
    """Y of the frame at span.start_pts (of the last frame in the span with `last`: a deinterlacer
    that makes a frame per field gives two)."""
    for margin in (SEEK_MARGIN_S, math.inf):
        _, frames = decode_all(build_chunk_decode_args(ffmpeg, job.source, job.plan, span, margin, filters, size))
        if frames:
            return frames[-1][0] if last else frames[0][0]
    raise InputError(
        f"{job.source}: the frame at {float(span.start_pts * job.plan.tb):.3f} s next to chunk "
        f"{job.chunk.index} could not be decoded"
    )


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def _fingerprint(source: Path, settings: UpscaleSettings, chunks: int | None) -> str:
    stat = source.stat()
    doc = {
        "source": str(source.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "preset": settings.preset,
        "encode": asdict(settings.encode),
        "chunks": chunks,
        "backend": settings.backend,
        "precision": settings.precision,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _load_or_make_plan(
    parts: Path, settings: UpscaleSettings, probe: ProbeInfo, chunks: int | None, resume: bool
) -> tuple[ChunkPlan, dict[str, Any]]:
    source = Path(settings.input.path)
    fingerprint = _fingerprint(source, settings, chunks)
    plan_file, manifest_file = parts / "plan.json", parts / "manifest.json"
    if parts.exists():
        if not resume:
            raise OutputError(
                f"{parts} holds the parts of an earlier run: add --resume to finish it, or remove the folder"
            )
        doc = json.loads(plan_file.read_text())
        if doc.get("fingerprint") != fingerprint:
            raise OutputError(f"{parts}: the earlier run used another input or settings; remove the folder")
        manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {"done": {}}
        for stale in parts.glob(".part-*.partial-*"):  # parts a killed worker never published
            stale.unlink(missing_ok=True)
        return ChunkPlan.from_json(doc["plan"]), manifest
    ffmpeg = locate_ffmpeg()
    tb, frame_pts, key_pts = list_packets(ffmpeg.path, str(source))
    plan = plan_chunks(str(source), tb, frame_pts, key_pts, probe.start_s, chunks=chunks)
    parts.mkdir()
    _write_json(plan_file, {"fingerprint": fingerprint, "plan": plan.to_json()})
    manifest = {"done": {}}
    _write_json(manifest_file, manifest)
    return plan, manifest


def _whole_parts(parts: Path, manifest: dict[str, Any]) -> set[int]:
    """Chunks whose part file is on disk with the size the manifest recorded."""
    done = set()
    for key, rec in manifest["done"].items():
        part = parts / f"part-{int(key):05d}.{PART_FORMAT}"
        if part.exists() and part.stat().st_size == rec["bytes"]:
            done.add(int(key))
    return done


def upscale_chunked(
    settings: UpscaleSettings,
    *,
    chunks: int | None,
    scheduler: str | None = None,
    local_workers: int = 2,
    resume: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ChunkedOutcome:
    """Plan, run missing chunks on Dask, join; `chunks=None` means parts of about 20 s.

    `on_progress(frames, total)` is called as frames are written (the running chunks report
    their counts as Dask events every half second), not only when a chunk ends."""
    source = settings.input
    if source.is_stdin or source.raw is not None or source.sequence_rate is not None or settings.output == "-":
        raise UsageError(
            "--chunks needs a video file in and a file out (not stdin, stdout, raw .yuv or an image sequence)"
        )
    if is_image_output(settings.output, settings.encode.format):
        raise UsageError(f"--chunks joins its parts into one video file; {settings.output} is an image name")
    check_input(source)
    parts = Path(settings.output).with_name(Path(settings.output).name + ".parts")
    check_output(source, settings.output, settings.overwrite or resume)
    t0 = time.perf_counter()
    if settings.deinterlace == "field":
        raise UsageError(
            "--deinterlace field doubles the frame count and cannot be split into chunks; "
            "use --deinterlace frame or run without --chunks"
        )
    if not settings.strict_decode:
        raise UsageError(
            "--ignore-decode-errors cannot be used with --chunks: each chunk is checked "
            "against the file's packet list instead, which a damaged file fails"
        )
    if is_external_model(settings.preset):
        raise UsageError("--chunks runs shipped presets and .pt files; run an ONNX model without --chunks")
    load_preset(settings.preset)  # fail fast on the driver, not on every worker
    ffmpeg = locate_ffmpeg()
    check_output_format(ffmpeg.path, settings.output, settings.encode.format)
    probe = probe_file(ffmpeg.path, source.path, first_frame=True)
    check_probed(source.path, probe)
    deinterlace = choose_deinterlace(settings, probe)
    plan, manifest = _load_or_make_plan(parts, settings, probe, chunks, resume)
    reused = _whole_parts(parts, manifest)
    codec, crf = resolve_codec(settings.output, settings.encode)
    part_encode = replace(settings.encode, codec=codec, crf=crf, format=PART_FORMAT, copy_streams=False)
    threads = settings.threads or (None if scheduler else max(1, default_threads() // local_workers))
    topic = new_topic() if on_progress is not None else None
    jobs = [
        ChunkJob(
            source.path,
            plan,
            c,
            settings.preset,
            part_encode,
            probe,
            str(parts / f"part-{c.index:05d}.{PART_FORMAT}"),
            threads,
            settings.backend,
            settings.precision,
            deinterlace,
            topic,
        )
        for c in plan.chunks
        if c.index not in reused
    ]
    frames_done = sum(plan.chunks[i].frames for i in reused)
    if on_progress:
        on_progress(frames_done, plan.total_frames)
    workers = 0
    if jobs:
        with open_client(scheduler, local_workers) as client:
            from espcn_video.jobs.preflight import check_workers

            check_workers(client, [source.path], [str(parts)])
            workers = len(client.scheduler_info().get("workers", {}))
            counts = TaskProgress(client, topic) if topic is not None else None
            running = {str(job.chunk.index) for job in jobs}

            def tick() -> None:
                if on_progress is not None and counts is not None:
                    on_progress(frames_done + counts.frames(running), plan.total_frames)

            futures = [client.submit(process_chunk, job, retries=TASK_RETRIES, pure=False) for job in jobs]
            first_error: BaseException | None = None
            try:
                for future in completed_while_ticking(futures, tick):
                    try:
                        rec = future.result()
                    except Exception as exc:  # noqa: BLE001 - the others still finish, for --resume
                        first_error = first_error or exc
                        continue
                    manifest["done"][str(rec["index"])] = rec
                    _write_json(parts / "manifest.json", manifest)
                    frames_done += rec["frames"]
                    running.discard(str(rec["index"]))
                    tick()
            finally:
                if counts is not None:
                    counts.close()
            if first_error is not None:
                done = len(manifest["done"])
                raise EspcnVideoError(
                    f"{first_error} ({done} of {len(plan.chunks)} chunks done; --resume runs the rest)"
                ) from first_error
    frames = _join(parts, plan, manifest, settings, probe, overwrite=settings.overwrite or resume)
    shutil.rmtree(parts)
    notes = describe_input(settings, probe, deinterlace, chunked=True)
    if chunks is not None and chunks > len(plan.chunks):
        notes.insert(
            0,
            f"--chunks {chunks}: {source.path} has only {plan.total_frames} frames, "
            f"so it ran as {len(plan.chunks)} chunks of one frame each",
        )
    changes = []
    if where := chunk_size_changes(plan, manifest):
        changes = look_at_size_changes(ffmpeg.path, source, where)
        lr_size = first_frame_size(probe)
        assert lr_size is not None, "a file that decodes has a size"
        notes.append(size_change_note(probe, lr_size, changes))
    return ChunkedOutcome(
        plan,
        frames,
        time.perf_counter() - t0,
        [j.chunk.index for j in jobs],
        sorted(reused),
        workers,
        notes,
        changes,
    )


def chunk_size_changes(plan: ChunkPlan, manifest: dict[str, Any]) -> list[tuple[int, float]]:
    """Where the source changed frame size, over all chunks: inside one, or between two (a chunk
    whose first frame differs from the previous chunk's last). Each as (frame, seconds)."""
    where: list[tuple[int, float]] = []
    start = 0
    last: int | None = None
    for chunk in plan.chunks:
        rec = manifest["done"].get(str(chunk.index), {})
        ends = rec.get("frame_bytes")
        if ends is not None and last is not None and ends[0] != last:
            where.append((start, float(chunk.start_pts * plan.tb) - plan.container_start_s))
        where += [(start + i, t) for i, t in rec.get("size_changes", [])]
        last = ends[1] if ends is not None else None  # a part from an older version: not known
        start += chunk.frames
    return where


def _seconds(value: Fraction) -> str:
    """Seconds to the microsecond, rounded to the nearest as ffmpeg rounds a file's start time."""
    us = round(value * 1_000_000)
    return f"{'-' if us < 0 else ''}{abs(us) // 1_000_000}.{abs(us) % 1_000_000:06d}"


def build_concat_listing(plan: ChunkPlan, starts: dict[int, Fraction] | None = None) -> str:
    """Each part with its exact duration (the next chunk's start minus its own): the concat
    demuxer then places every part at its chunk's start, whatever the last frame's duration.

    `starts`: each part's first frame time in its own file, given as its `inpoint`, so that the
    demuxer does not depend on ffmpeg finding the part's start time (it does not for a short
    H.264 part without B-frames, and then put the part late by its whole start time).
    """
    lines = []
    for c in plan.chunks:
        lines.append(f"file 'part-{c.index:05d}.{PART_FORMAT}'\n")
        if starts is not None and c.index in starts:
            lines.append(f"inpoint {_seconds(starts[c.index])}\n")
        if c.end_pts is not None:
            lines.append(f"duration {float((c.end_pts - c.start_pts) * plan.tb):.6f}\n")
    return "".join(lines)


def _join(
    parts: Path,
    plan: ChunkPlan,
    manifest: dict[str, Any],
    settings: UpscaleSettings,
    probe: ProbeInfo,
    *,
    overwrite: bool,
) -> int:
    """Join the parts, check the joined file frame by frame against the source's packets, publish."""
    ffmpeg = locate_ffmpeg()
    starts = {}
    for c in plan.chunks:
        rec = manifest["done"].get(str(c.index), {})
        if "start_s" in rec:
            starts[c.index] = Fraction(rec["start_s"])
        else:  # a part from an older version (--resume): measured here
            starts[c.index] = part_start(ffmpeg.path, parts / f"part-{c.index:05d}.{PART_FORMAT}")
    listing = parts / "concat.txt"
    listing.write_text(build_concat_listing(plan, starts))
    sweep_stale_temporaries(settings.output)
    target = temporary_output(settings.output)
    video_start_s = float(plan.chunks[0].start_pts * plan.tb) - plan.container_start_s
    siting = probe.frame.chroma_location if probe.frame is not None else None
    color = probe.decoded_color
    video = OutputVideo(
        full_range=color.range == "pc" or (probe.pix_fmt or "").startswith("yuvj"),
        color=color,
        chroma_location=siting,
        time_base=plan.tb,  # the source's packets' (MP4 gets it back as its track time scale)
        frame_rate=probe.frame_rate,  # y4m's and AVI's clock
    )
    covers: list[Path] = []
    try:
        attach = []
        if settings.encode.copy_streams:
            attach = extract_covers(
                ffmpeg.path, settings.input.path, probe, settings.output, settings.encode.format, covers
            )
        cmd = build_join_args(
            ffmpeg.path,
            str(listing),
            str(target),
            settings.encode,
            source=settings.input,
            probe=probe,
            video_start_s=video_start_s,
            video=video,
            attach=attach,
        )
        with FFmpegProcess("join", cmd) as proc:
            proc.check()
        tb, pts, _ = list_packets(ffmpeg.path, settings.input.path)
        expected = [p * tb - Fraction(round(plan.container_start_s * 1_000_000), 1_000_000) for p in pts]
        check = verify_output(ffmpeg.path, target, settings.output, settings.encode.format, len(pts), expected)
        publish(target, settings.output, overwrite)
    finally:
        target.unlink(missing_ok=True)
        for path in covers:
            discard_temporary(path)
    assert check.frames is not None
    return check.frames
