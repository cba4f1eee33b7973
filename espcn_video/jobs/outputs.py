"""OUT from start to finish: checked before the run, written under a temporary name beside it,
measured (frame count, timestamps) and only then published, never over a file that appeared
meanwhile; temporaries of runs that died are swept."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from espcn_video.errors import OutputError, UsageError
from espcn_video.ffmpeg.args import (
    Attachment,
    build_cover_extract_args,
    covers_to_attach,
    is_numbered,
    known_suffix,
    output_muxer,
)
from espcn_video.ffmpeg.locate import output_format_known
from espcn_video.ffmpeg.probe import ProbeInfo, probe_file
from espcn_video.ffmpeg.timestamps import list_packets
from espcn_video.settings import InputSpec

_TEMP = re.compile(r"^\.(?P<stem>.*)\.partial-(?P<pid>\d+)-[0-9a-f]{6}(?P<suffix>.*)$")
TIMINGS_SUFFIXES = (".csv", ".json")


# Muxers that store no clock at all: frames are written in order, so only their count is checked.
# (y4m stores one frame rate: its frames' times are read back and checked like any container's.)
_UNTIMED_MUXERS = ("rawvideo",)


@dataclass
class OutputCheck:
    """What was measured on the written file before it was published."""

    frames: int | None = None  # video packets counted in the file
    max_time_error_s: float | None = None  # largest |output pts - input pts|, relative to frame 0
    start_offset_s: float | None = None  # output's first pts minus the input's
    time_base: str | None = None
    images: bool = False  # an image or a numbered sequence: files counted, no clock to compare


def temporary_output(output: str, suffix: str | None = None) -> Path:
    """A hidden name beside OUT; `suffix` for the other files a run keeps there (a stdin spool).

    A numbered image sequence (frame_%04d.png) is written into a hidden folder beside it, under
    its own pattern, and its frames are moved into place only once all of them are checked.
    """
    out = Path(output)
    tag = f"partial-{os.getpid()}-{secrets.token_hex(3)}"
    if suffix is None and is_numbered(output):
        folder = out.with_name(f".{_folder_stem(out)}.{tag}")  # no '%' in it: ffmpeg would number it
        folder.mkdir()
        return folder / out.name
    return out.with_name(f".{out.stem}.{tag}{out.suffix if suffix is None else suffix}")


def extract_covers(
    ffmpeg: str, source: str, probe: ProbeInfo | None, output: str, fmt: str | None, temporaries: list[Path]
) -> list[Attachment]:
    """The source's cover images copied out (their own bytes) to hidden files beside OUT, for a
    Matroska OUT to attach (ffmpeg would write them there as video tracks). Each file is added to
    `temporaries` (the caller removes them); a cover that cannot be copied out is left out."""
    found = []
    for j, (stream, suffix, name, mime) in enumerate(covers_to_attach(output, fmt, probe)):
        path = temporary_output(output, f".cover{j}{suffix}")
        temporaries.append(path)
        try:
            done = subprocess.run(
                build_cover_extract_args(ffmpeg, source, stream, str(path)),
                capture_output=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0 and path.is_file() and path.stat().st_size > 0:
            found.append(Attachment(str(path), name, mime))
    return found


def _folder_stem(out: Path) -> str:
    return out.stem.replace("%", "")


def _remove(entry: Path) -> None:
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def discard_temporary(path: Path) -> None:
    """Remove a temporary output: the file, or the hidden folder of a numbered sequence."""
    _remove(path.parent if _TEMP.match(path.parent.name) else path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # not ours to signal, or a platform that cannot tell: assume alive
    return True


def sweep_stale_temporaries(output: str) -> list[Path]:
    """Remove temporary outputs for OUT left by runs that died (SIGKILL, power loss)."""
    out = Path(output)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for entry in out.parent.iterdir():
        m = _TEMP.match(entry.name)
        if m and m["stem"] in (out.stem, _folder_stem(out)) and not pid_alive(int(m["pid"])):
            _remove(entry)
            removed.append(entry)
    return removed


def check_writable_file(path: str, what: str) -> None:
    """An output file's folder must exist and be writable, before hours of work are spent."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name")
    parent = target.parent
    if not parent.exists():
        raise OutputError(f"{what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{what} {path}: folder {parent} is not writable")


def check_output(source: InputSpec, output: str, overwrite: bool) -> None:
    if output == "-":
        return
    out = Path(output)
    if not source.is_stdin and out.resolve() == Path(source.path).resolve():
        raise OutputError(f"{output}: output is the input file; choose another name")
    if out.exists() and not out.is_dir() and not overwrite:
        raise OutputError(f"{output}: already exists (use -y/--overwrite to replace it)")
    if is_numbered(output) and not overwrite:
        first = sequence_name(output, 1)
        if first.exists():
            raise OutputError(f"{output}: {first.name} already exists (use -y/--overwrite to replace the sequence)")
    check_writable_file(output, "OUT")


def check_output_format(ffmpeg: str, output: str, fmt: str | None) -> None:
    """Before any frame: a name whose format ffmpeg cannot choose (or an unknown --format) fails
    here, not at the encoder once every frame was upscaled."""
    if output == "-" and fmt is None:
        return
    suffix = Path(output).suffix.lower() if output != "-" else ""
    if (fmt or suffix.lstrip(".")) == "gif":
        raise UsageError(
            f"{output}: animated GIF is not written (256 colours a frame); write .mkv, .mp4 or a PNG "
            "sequence and make the GIF from it with ffmpeg's palettegen and paletteuse"
        )
    if fmt is None and known_suffix(suffix):
        return
    if output_format_known(ffmpeg, suffix, fmt):
        return
    if fmt is not None:
        raise UsageError(f"--format {fmt}: this ffmpeg has no such output format (ffmpeg -muxers lists them)")
    raise UsageError(
        f"{output}: ffmpeg cannot tell a format from {suffix or 'a name without an extension'}; "
        "use a known extension (.mkv, .mp4, .mov, .webm, .ts, .nut, .y4m, .png...) or --format NAME"
    )


def sequence_name(output: str, number: int) -> Path:
    """File `number` of a numbered sequence (ffmpeg's image2 muxer counts from 1)."""
    out = Path(output)
    return out.with_name(out.name % number)


def sequence_names(output: str, frames: int) -> list[Path]:
    return [sequence_name(output, n) for n in range(1, frames + 1)]


def one_image_error(output: str, frames: int, about: bool = False) -> str:
    out = Path(output)
    return (
        f"{output}: IN has {'about ' if about else ''}{frames} frames and OUT names one image; give a "
        f"numbered name for a sequence, e.g. {out.stem}_%04d{out.suffix}"
    )


def check_timings_path(path: str | None) -> None:
    if path is None:
        return
    if Path(path).suffix.lower() not in TIMINGS_SUFFIXES:
        raise UsageError(f"--timings {path}: use a .csv or .json file name")
    check_writable_file(path, "--timings")


def publish(target: Path, output: str, overwrite: bool) -> None:
    """Move the verified file into place; without -y never over a file that appeared meanwhile."""
    if overwrite:
        os.replace(target, output)
        return
    try:
        os.link(target, output)  # atomic and fails if OUT exists
    except FileExistsError:
        raise OutputError(
            f"{output}: appeared while this run was working; not replaced (run again with -y to replace it)"
        ) from None
    except OSError:
        if os.path.exists(output):  # no hard links on this file system: check, then rename
            raise OutputError(
                f"{output}: appeared while this run was working; not replaced (run again with -y to replace it)"
            ) from None
        os.replace(target, output)
        return
    target.unlink()


def verify_images(ffmpeg: str, target: Path, output: str, frames: int, size: tuple[int, int] | None) -> OutputCheck:
    """Images hold no timestamps: one file per frame, each there, the size the frames had."""
    if is_numbered(output):
        want = [target.with_name(p.name) for p in sequence_names(output, frames)]
        written = sorted(target.parent.iterdir())
        if written != sorted(want):
            raise OutputError(f"{output}: {len(written)} images were written for {frames} frames; nothing published")
    elif frames != 1:
        raise OutputError(one_image_error(output, frames) + "; nothing published")
    else:
        want = [target]
    for path in {want[0], want[-1]}:
        info = probe_file(ffmpeg, str(path))
        if size is not None and (info.width, info.height) != size:
            raise OutputError(
                f"{output}: {path.name} is {info.width}x{info.height}, not {size[0]}x{size[1]}; nothing published"
            )
    return OutputCheck(frames=len(want), images=True)


def publish_sequence(target: Path, output: str, overwrite: bool) -> int:
    """Move the checked frames of a numbered sequence into place; without -y, none moves when any
    of their names appeared meanwhile. Returns how many files further up the pattern are left
    from an earlier, longer sequence (never deleted)."""
    frames = sorted(target.parent.iterdir())
    finals = [Path(output).with_name(p.name) for p in frames]
    if not overwrite:
        there = [f for f in finals if f.exists()]
        if there:
            raise OutputError(
                f"{output}: {there[0].name} appeared while this run was working; nothing published "
                "(run again with -y to replace the sequence)"
            )
    for path, final in zip(frames, finals, strict=True):
        publish(path, str(final), overwrite)
    target.parent.rmdir()
    left = 0
    while sequence_name(output, len(finals) + left + 1).exists():
        left += 1
    return left


def verify_output(
    ffmpeg: str,
    path: Path,
    output: str,
    muxer_name: str | None,
    frames: int,
    frame_times_s: list[Fraction],
    shift_s: Fraction = Fraction(0),
) -> OutputCheck:
    """Count the written file's video packets and compare their timestamps with the input's
    (`frame_times_s`, shifted by `shift_s`), relative to the first frame."""
    tb, pts, _ = list_packets(ffmpeg, str(path))
    check = OutputCheck(frames=len(pts), time_base=f"{tb.numerator}/{tb.denominator}")
    if len(pts) != frames:
        raise OutputError(f"{output}: the written file has {len(pts)} frames, {frames} were encoded; not published")
    if output_muxer(output, muxer_name) in _UNTIMED_MUXERS or not frame_times_s:
        return check
    want = [t + shift_s for t in frame_times_s]
    got = [p * tb for p in pts]
    check.start_offset_s = float(got[0] - want[0])
    errors = [abs((g - got[0]) - (w - want[0])) for g, w in zip(got, want, strict=True)]
    check.max_time_error_s = float(max(errors))
    tolerance = tb + Fraction(1, 1_000_000)  # one output tick, plus the pipe's microsecond
    if max(errors) > tolerance:
        worst = errors.index(max(errors))
        raise OutputError(
            f"{output}: frame {worst} is at {float(got[worst] - got[0]):.6f} s in the written "
            f"file but {float(want[worst] - want[0]):.6f} s in the input; not published (a container "
            "that stores a fixed frame rate, such as AVI or y4m, cannot keep these timestamps: use .mkv "
            "or .mp4)"
        )
    return check
