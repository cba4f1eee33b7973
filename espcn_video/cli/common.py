"""What every command shares: one-line errors, exit codes, stderr console, JSON on stdout.

The CLI layer (this package) is the only code that prints or exits; the jobs below it
raise EspcnVideoError subclasses and return results.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from rich.console import Console

from espcn_video.errors import EspcnVideoError, FFmpegError, StageError, UsageError
from espcn_video.settings import SUPPORTED_SCALES

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_THRESHOLD = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports it

SCHEMA_VERSION = 1
_verbose = False
_LOG_HANDLER = logging.StreamHandler()  # stream set on use: tests swap sys.stderr
_LOG_HANDLER.setFormatter(logging.Formatter("espcn-video: %(message)s"))


def set_verbose(verbose: bool) -> None:
    """-v: every ffmpeg command line and exit status on stderr; a failed ffmpeg's error names its command."""
    global _verbose
    _verbose = verbose
    logger = logging.getLogger("espcn_video")
    logger.removeHandler(_LOG_HANDLER)
    if verbose:
        _LOG_HANDLER.setStream(sys.stderr)
        logger.addHandler(_LOG_HANDLER)
    logger.setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _error_text(exc: EspcnVideoError) -> str:
    cause = exc.cause if isinstance(exc, StageError) else exc
    if _verbose and isinstance(cause, FFmpegError):
        return f"{exc} (command: {cause.command_line()})"
    return str(exc)


LOG_WIDTH = 200  # tables written to a file or a pipe: wide enough that no column is cut to "…"


def stderr_console() -> Console:
    """The console of tables and summaries (stderr). A terminal's own width; a file or a pipe
    (a log, `2>&1 | less`) gets LOG_WIDTH columns unless COLUMNS says otherwise, so a preset's
    name is never cut short where nobody can widen the window."""
    wide = None if os.environ.get("COLUMNS") or sys.stderr.isatty() else LOG_WIDTH
    return Console(stderr=True, highlight=False, soft_wrap=True, width=wide)


def fail(message: str, exit_code: int = EXIT_FAILURE) -> NoReturn:
    """Print one line 'espcn-video: error: ...' on stderr and exit."""
    one_line = " ".join(str(message).split())
    click.echo(f"espcn-video: error: {one_line}", err=True)
    sys.exit(exit_code)


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, systemd, docker stop): the same clean-up as Ctrl-C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def install_signal_handlers() -> None:
    """SIGTERM unwinds the main thread like Ctrl-C: children killed, temporary files removed."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_terminated)


def _exit_now(message: str, code: int) -> NoReturn:
    """After an interrupt the children are dead and the temporary files gone (the finally blocks
    ran on the way here); skip the second of interpreter teardown that torch and OpenVINO cost."""
    click.echo(message, err=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def guarded(func: Callable[P, R]) -> Callable[P, R | None]:
    """Turn project errors into one-line messages, Ctrl-C into exit 130, SIGTERM into 143, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        install_signal_handlers()
        try:
            return func(*args, **kwargs)
        except EspcnVideoError as exc:
            fail(_error_text(exc), exc.exit_code)
        except Terminated:
            _exit_now("espcn-video: terminated", EXIT_TERMINATED)
        except KeyboardInterrupt:
            _exit_now("espcn-video: interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            # stdout closed by the reader (e.g. `| head`): nothing left to say.
            sys.exit(EXIT_FAILURE)

    return wrapper


def emit_json(payload: dict[str, Any]) -> None:
    """Data on stdout: one JSON document with schema_version first."""
    doc = {"schema_version": SCHEMA_VERSION, **payload}
    sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


class ScaleChoice(click.Choice):
    """--scale: shown as [2|3|4], an int after parsing; click itself refuses other values (exit 2)."""

    name = "scale"

    def __init__(self) -> None:
        super().__init__([str(s) for s in SUPPORTED_SCALES])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        return int(super().convert(str(value), param, ctx))


SCALE = ScaleChoice()


class DeviceType(click.ParamType):
    """--device: auto, cpu, cuda or cuda:N (torch's names); click refuses anything else (exit 2),
    before a preset or a frame is loaded. model/backends.check_device is the same check below the CLI."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
            return text
        self.fail(f"unknown device {value!r}; choose auto, cpu, cuda or cuda:N", param, ctx)


DEVICE = DeviceType()


def deinterlace_option(func: F) -> F:
    """--deinterlace, the same for every command that runs the frame path (upscale, compare)."""
    return click.option(
        "--deinterlace",
        type=click.Choice(["auto", "off", "frame", "field"]),
        default="auto",
        show_default=True,
        help="Interlaced input: auto deinterlaces (bwdif, one frame per frame) when the source says it is "
        "interlaced; frame/field force it (field doubles the rate); off keeps fields woven.",
    )(func)


def raw_input_options(func: F) -> F:
    """--input-size/--input-pix-fmt/--input-rate: what a headerless .yuv needs (every command that reads one)."""
    for option in reversed(
        (
            click.option(
                "--input-size",
                default=None,
                metavar="WxH",
                help="Raw .yuv input: frame size (psnr: else from a UVG-style name).",
            ),
            click.option(
                "--input-pix-fmt",
                default=None,
                help="Raw .yuv input: ffmpeg pixel format (default yuv420p, or from the name).",
            ),
            click.option(
                "--input-rate",
                default=None,
                help=(
                    "Raw .yuv input or a numbered image sequence (frame_%04d.png): frame rate, e.g. 25 "
                    "or 30000/1001 (default 25, or from the name)."
                ),
            ),
        )
    ):
        func = option(func)
    return func


# Files that carry their own frame size, pixel format and rate (containers, y4m, elementary
# streams, images): read as headerless raw video they would give garbage frames.
HEADERED_SUFFIXES = frozenset(
    {
        ".3gp", ".264", ".265", ".asf", ".avi", ".bmp", ".dpx", ".dv", ".f4v", ".flv", ".gif", ".h264",
        ".hevc", ".ivf", ".jpeg", ".jpg", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts",
        ".mxf", ".nut", ".obu", ".ogv", ".png", ".tif", ".tiff", ".ts", ".vob", ".webm", ".webp", ".wmv", ".y4m",
    }
)  # fmt: skip


def is_headered(path: str) -> bool:
    """A file named as a format that says its own size, pixel format and rate (never raw video)."""
    return path != "-" and Path(path).suffix.lower() in HEADERED_SUFFIXES


def check_raw_options(path: str, size: str | None, pix_fmt: str | None, rate: str | None) -> None:
    """--input-size/--input-pix-fmt/--input-rate describe a headerless raw .yuv (--input-rate also a
    numbered image sequence, frame_%04d.png): refused for IN named as a file that carries its own
    size, format and rate, which read as raw video would be garbage."""
    from espcn_video.ffmpeg.args import is_numbered

    sequence = rate is not None and is_numbered(path) and not Path(path).exists()
    given = [
        option
        for option, value in (("--input-size", size), ("--input-pix-fmt", pix_fmt), ("--input-rate", rate))
        if value is not None and not (option == "--input-rate" and sequence)
    ]
    if given and is_headered(path):
        if len(given) == 1:
            said, them = f"{given[0]} describes", "it"
        else:
            said, them = f"{', '.join(given[:-1])} and {given[-1]} describe", "them"
        raise UsageError(
            f"{path}: {said} raw .yuv input, and a {Path(path).suffix.lower()} file carries its own size, "
            f"pixel format and rate; leave {them} out"
        )


def parse_size(text: str | None, option: str = "--input-size") -> tuple[int, int] | None:
    """'1920x1080' -> (1920, 1080); None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise UsageError(f"{option} {text!r}: expected WxH, e.g. 1920x1080")
    return int(m.group(1)), int(m.group(2))


def parse_rate(text: str, option: str = "--input-rate") -> Fraction:
    """'25', '30000/1001' or '30000:1001' -> a positive Fraction."""
    try:
        rate = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"{option} {text!r}: expected a number or N/D, e.g. 25 or 30000/1001") from None
    if rate <= 0:
        raise UsageError(f"{option} {text!r}: must be positive")
    return rate
