"""Chunked, resumable upscaling on Dask distributed, built on the same pipeline as `upscale`.

The driver plans frame-exact chunks from packet timestamps, submits one task per missing chunk
(Dask retries a task that raises and reschedules one whose worker died), records each finished
chunk in a manifest beside OUT, joins the parts once with the concat demuxer and muxes the
source's audio, subtitles and metadata in. A part is written under a temporary name and renamed
only after its frame count matched the plan, so a part on disk is always whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from espcn_video.errors import EspcnVideoError, FrameCountMismatch, InputError, OutputError, UsageError
from espcn_video.ffmpeg.args import (
    OutputVideo,
    build_deinterlace_filter,
    build_encode_args,
    build_join_args,
    resolve_codec,
)
from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.ffmpeg.mkv import build_hdr_colour
from espcn_video.ffmpeg.probe import ProbeInfo, probe_file
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.y4m import Y4MHeader
from espcn_video.files import atomic_write_text
from espcn_video.frames.pipeline import run_pipeline
from espcn_video.frames.sinks import encoder_sink
from espcn_video.frames.upscaler import FrameUpscaler
from espcn_video.jobs.batch import expand_inputs, output_is_complete
from espcn_video.jobs.chunk_plan import (
    SEEK_MARGIN_S,
    Chunk,
    ChunkPlan,
    build_chunk_decode_args,
    list_packets,
    plan_chunks,
)
from espcn_video.jobs.inputs import check_input, choose_deinterlace, output_video_for
from espcn_video.jobs.outputs import check_output, publish, sweep_stale_temporaries, temporary_output, verify_output
from espcn_video.model.engines import create_engine, default_threads
from espcn_video.model.graphs import ranges_from_metadata
from espcn_video.model.presets import load_preset
from espcn_video.settings import EncodeSettings, InputSpec, UpscaleSettings

TASK_RETRIES = 2
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


@dataclass
class ChunkedOutcome:
    plan: ChunkPlan
    frames: int
    wall_s: float
    chunks_run: list[int] = field(default_factory=list)
    chunks_reused: list[int] = field(default_factory=list)
    workers: int = 0


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
            calibration=ranges_from_metadata(preset.metadata, model),
        ),
        siting,
    )
    final = Path(job.part_path)
    tmp = final.with_name(f".{final.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}.{PART_FORMAT}")
    codec = job.encode.codec
    assert codec is not None, "upscale_chunked resolves the parts' codec"
    frame = probe.frame
    hdr_colour = build_hdr_colour(frame.mastering, frame.content_light) if frame is not None else b""

    def build_encoder(header: Y4MHeader) -> list[str]:
        video, _ = output_video_for(header, preset.scale, codec, probe, siting, job.deinterlace)
        return build_encode_args(ffmpeg.path, str(tmp), job.encode, video=video, timed=True)

    try:
        frames = -1
        # A container seek may overshoot (MPEG-TS seeks by bytes): then decode from the start.
        for margin in (SEEK_MARGIN_S, math.inf):
            decode = build_chunk_decode_args(
                ffmpeg.path, job.source, job.plan, job.chunk, margin, build_deinterlace_filter(job.deinterlace)
            )
            # After a seek the decoder may complain about references it never saw; the frame
            # count check below is what proves the chunk whole. -copyts keeps the file's own
            # timestamps: take off its start as an unchunked decode does.
            result = run_pipeline(
                decode,
                encoder_sink(build_encoder, timed=True, hdr_colour=hdr_colour),
                upscaler,
                strict_decode=False,
                timed=True,
                time_offset_us=round(job.plan.container_start_s * 1_000_000),
            )
            frames = result.frames_written
            if frames == job.chunk.frames:
                break
        if frames != job.chunk.frames:
            raise FrameCountMismatch(job.chunk.frames, frames)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "index": job.chunk.index,
        "frames": frames,
        "bytes": final.stat().st_size,
        "wall_s": round(time.perf_counter() - t0, 3),
    }


CLOSE_TIMEOUT_S = 20.0
_WORKER_PROCESS_NAME = "Dask Worker process (from Nanny)"  # distributed.nanny.WorkerProcess


@contextlib.contextmanager
def open_client(scheduler: str | None, local_workers: int) -> Iterator[Any]:
    """A Dask client: to a running scheduler, or to a local cluster kept on loopback.

    The local cluster's scratch space lives in a temporary folder removed afterwards, and every
    worker process it started is gone when this returns, whatever state the workers were in.
    """
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise UsageError("chunked upscaling needs Dask: pip install 'espcn-video[distributed]'") from exc
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise EspcnVideoError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):  # a scheduler gone meanwhile has nothing to close
                client.close(timeout=CLOSE_TIMEOUT_S)
        return
    # ignore_cleanup_errors: a worker killed mid-write may leave a file being removed twice.
    # The scheduler in this process makes a scratch folder too (from "temporary-directory", not from
    # local_directory): without the config both would leave /tmp/dask-scratch-space behind.
    with (
        tempfile.TemporaryDirectory(prefix="espcn-video-dask-", ignore_cleanup_errors=True) as scratch,
        dask.config.set({"temporary-directory": scratch}),
    ):
        cluster = LocalCluster(
            n_workers=local_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            local_directory=scratch,
        )
        try:
            with Client(cluster) as client:
                try:
                    yield client
                except BaseException:
                    # A worker inside a chunk does not stop for a graceful close (its task thread is
                    # in native code or blocked on a pipe): kill it, so Ctrl-C and errors return at
                    # once. Its ffmpeg children see a broken pipe or EOF and exit; parts stay unpublished.
                    _kill_processes(_worker_processes(cluster))
                    raise
        finally:
            _shut_down(cluster)


def _worker_processes(cluster: Any) -> list[Any]:
    """The cluster's live worker processes and their children (ffmpeg), as psutil handles."""
    import psutil

    found = []
    for nanny in list(cluster.workers.values()):
        pid = getattr(nanny, "pid", None)
        with contextlib.suppress(psutil.Error, TypeError, ValueError):
            proc = psutil.Process(pid)
            found.append(proc)
            found.extend(proc.children(recursive=True))
    # A worker the nanny is still restarting is not in cluster.workers' pids yet.
    for child in multiprocessing.active_children():
        if child.name == _WORKER_PROCESS_NAME and child.pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(child.pid)
                found.append(proc)
                found.extend(proc.children(recursive=True))
    return found


def _kill_processes(procs: list[Any]) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks the create time: a reused pid is not ours and is left alone


def _shut_down(cluster: Any) -> None:
    """Close the cluster with a bound on the time; SIGKILL and reap whatever outlived the close.

    A graceful close asks each worker to stop and only then SIGKILLs it; a worker stuck at
    interpreter shutdown, or restarted by its nanny while the cluster closes, can escape that
    and outlive us holding our stderr, which hangs anyone reading it to EOF (pytest's capture).
    """
    import psutil

    before = _worker_processes(cluster)
    try:
        cluster.close(timeout=CLOSE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the kill below is the fallback
        log.warning("closing the local Dask cluster failed (%s); killing its workers", exc)
    left = [p for p in before + _worker_processes(cluster) if p.is_running()]
    _kill_processes(left)
    psutil.wait_procs(left, timeout=5.0)  # reaps our own children, waits out the others
    for child in multiprocessing.active_children():  # reaps the multiprocessing handles
        if child.name == _WORKER_PROCESS_NAME:
            child.join(timeout=1.0)


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
    """Plan, run missing chunks on Dask, join; `chunks=None` means parts of about 20 s."""
    source = settings.input
    if source.is_stdin or source.raw is not None or settings.output == "-":
        raise UsageError("--chunks needs a video file in and a file out (not stdin, stdout or raw .yuv)")
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
    load_preset(settings.preset)  # fail fast on the driver, not on every worker
    ffmpeg = locate_ffmpeg()
    probe = probe_file(ffmpeg.path, source.path, first_frame=True)
    deinterlace = choose_deinterlace(settings, probe)
    plan, manifest = _load_or_make_plan(parts, settings, probe, chunks, resume)
    reused = _whole_parts(parts, manifest)
    codec, crf = resolve_codec(settings.output, settings.encode)
    part_encode = replace(settings.encode, codec=codec, crf=crf, format=PART_FORMAT, copy_streams=False)
    threads = settings.threads or (None if scheduler else max(1, default_threads() // local_workers))
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
            from dask.distributed import as_completed

            from espcn_video.jobs.preflight import check_workers

            check_workers(client, [source.path], [str(parts)])
            workers = len(client.scheduler_info().get("workers", {}))
            futures = [client.submit(process_chunk, job, retries=TASK_RETRIES, pure=False) for job in jobs]
            first_error: BaseException | None = None
            for future in as_completed(futures):
                try:
                    rec = future.result()
                except Exception as exc:  # noqa: BLE001 - the others still finish, for --resume
                    first_error = first_error or exc
                    continue
                manifest["done"][str(rec["index"])] = rec
                _write_json(parts / "manifest.json", manifest)
                frames_done += rec["frames"]
                if on_progress:
                    on_progress(frames_done, plan.total_frames)
            if first_error is not None:
                done = len(manifest["done"])
                raise EspcnVideoError(
                    f"{first_error} ({done} of {len(plan.chunks)} chunks done; --resume runs the rest)"
                ) from first_error
    frames = _join(parts, plan, settings, probe, overwrite=settings.overwrite or resume)
    shutil.rmtree(parts)
    return ChunkedOutcome(
        plan, frames, time.perf_counter() - t0, [j.chunk.index for j in jobs], sorted(reused), workers
    )


def build_concat_listing(plan: ChunkPlan) -> str:
    """Each part with its exact duration (the next chunk's start minus its own): the concat
    demuxer then places every part at its chunk's start, whatever the last frame's duration."""
    lines = []
    for c in plan.chunks:
        lines.append(f"file 'part-{c.index:05d}.{PART_FORMAT}'\n")
        if c.end_pts is not None:
            lines.append(f"duration {float((c.end_pts - c.start_pts) * plan.tb):.6f}\n")
    return "".join(lines)


def _join(parts: Path, plan: ChunkPlan, settings: UpscaleSettings, probe: ProbeInfo, *, overwrite: bool) -> int:
    """Join the parts, check the joined file frame by frame against the source's packets, publish."""
    listing = parts / "concat.txt"
    listing.write_text(build_concat_listing(plan))
    sweep_stale_temporaries(settings.output)
    target = temporary_output(settings.output)
    ffmpeg = locate_ffmpeg()
    video_start_s = float(plan.chunks[0].start_pts * plan.tb) - plan.container_start_s
    siting = probe.frame.chroma_location if probe.frame is not None else None
    color = probe.best_color
    video = OutputVideo(
        full_range=color.range == "pc" or (probe.pix_fmt or "").startswith("yuvj"), color=color, chroma_location=siting
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
    )
    try:
        with FFmpegProcess("join", cmd) as proc:
            proc.check()
        tb, pts, _ = list_packets(ffmpeg.path, settings.input.path)
        expected = [p * tb - Fraction(round(plan.container_start_s * 1_000_000), 1_000_000) for p in pts]
        check = verify_output(ffmpeg.path, target, settings.output, settings.encode.format, len(pts), expected)
        publish(target, settings.output, overwrite)
    finally:
        target.unlink(missing_ok=True)
    assert check.frames is not None
    return check.frames


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


def _upscale_one(settings: UpscaleSettings) -> dict[str, Any]:
    from espcn_video.jobs.summary import run_summary
    from espcn_video.jobs.upscale import upscale_video

    outcome = upscale_video(settings)
    return {"input": settings.input.path, "output": settings.output, "status": "done", **run_summary(outcome.result)}


def describe_task_error(exc: BaseException) -> str:
    """One line for a failed task: our errors as they are, Dask's and Python's named by type."""
    text = str(exc) if isinstance(exc, EspcnVideoError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())  # KilledWorker's message runs over several lines
    return text if len(text) <= 400 else text[:397] + "..."


def run_batch(
    all_settings: list[UpscaleSettings],
    *,
    scheduler: str | None,
    local_workers: int,
    on_done: Callable[[dict[str, Any]], None] | None = None,
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
        from dask.distributed import as_completed

        from espcn_video.jobs.preflight import check_workers

        out_dirs = sorted({str(Path(s.output).parent) for s in all_settings})
        check_workers(client, [s.input.path for s in all_settings], out_dirs)
        futures = {client.submit(_upscale_one, s, retries=TASK_RETRIES, pure=False): s for s in all_settings}
        for future in as_completed(futures):
            s = futures[future]
            try:
                rec = future.result()
            except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - recorded per file
                rec = {"input": s.input.path, "output": s.output, "status": "failed", "error": describe_task_error(exc)}
            results.append(rec)
            if on_done:
                on_done(rec)
    order = {s.input.path: i for i, s in enumerate(all_settings)}
    return sorted(results, key=lambda r: order[r["input"]])
