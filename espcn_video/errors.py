"""One error family: the CLI turns each into a one-line message and an exit code."""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Sequence


def _rebuild(cls: type[EspcnVideoError], args: tuple[object, ...], state: dict[str, object]) -> EspcnVideoError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class EspcnVideoError(Exception):
    """Base of every error the CLI reports as one line and exit 1."""

    exit_code = 1

    def __reduce__(self) -> tuple:
        # Subclasses take other constructor arguments than their message; rebuild from state so
        # errors raised on a Dask worker reach the driver intact.
        return (_rebuild, (type(self), self.args, self.__dict__))


class UsageError(EspcnVideoError):
    """Bad arguments found after parsing (exit 2, like click's own usage errors)."""

    exit_code = 2


class InputError(EspcnVideoError):
    """The input cannot be used: missing, empty, not video, wrong raw size."""


class NoVideoStream(InputError):
    """ffmpeg reads the file, and it holds no video stream (an audio file)."""


class OutputError(EspcnVideoError):
    """The output cannot be written: exists, equals the input, folder missing."""


class PresetError(EspcnVideoError):
    """A preset that is unknown, not ours, or does not fit the request."""


class DataError(EspcnVideoError):
    """Training or evaluation data that cannot be used."""


class FFmpegNotFound(EspcnVideoError):
    """No ffmpeg binary on PATH, in ESPCN_VIDEO_FFMPEG or from imageio-ffmpeg."""


class TruncatedFrame(EspcnVideoError):
    def __init__(self, source: str, frame_index: int, got_bytes: int, want_bytes: int) -> None:
        super().__init__(
            f"{source}: frame {frame_index} is truncated ({got_bytes} of {want_bytes} bytes): "
            "the stream is corrupt or ended mid-frame"
        )
        self.frame_index = frame_index


class StreamFormatError(EspcnVideoError):
    """A y4m stream whose header or FRAME marker does not parse (a desync)."""


class FrameCountMismatch(EspcnVideoError):
    def __init__(self, frames_read: int, frames_written: int) -> None:
        super().__init__(f"frame count mismatch: read {frames_read}, wrote {frames_written}")


def describe_returncode(returncode: int) -> str:
    """'exit 1' or 'killed by SIGKILL' (Popen reports signals as negative codes)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


_GENERIC = re.compile(
    r"Task finished with error code|Terminating thread with return code|Error sending frames to "
    r"consumers|Nothing was written into output file|Error submitting a packet|Error muxing a packet|"
    r"Conversion failed|Last message repeated|Error while filtering|Could not open encoder before EOF|"
    r"Error writing trailer: Broken pipe|Error closing file: Broken pipe|Error while opening encoder - maybe|"
    r"Generic error in an external library"
)
_ERRORISH = re.compile(
    r"error|invalid|fail|no such|no space|not found|unknown|unable|cannot|"
    r"could not|unsupported|denied|corrupt|incorrect|not divisible|must be|out of range|"
    r"too (?:small|large|big|high|low)|exceed|only .{0,120}supported",
    re.IGNORECASE,
)


def summarize_stderr(stderr_tail: str, max_lines: int = 2) -> str:
    """The lines of an ffmpeg stderr tail that say why: the first error-like ones, not the echo."""
    lines = [ln.strip() for ln in stderr_tail.splitlines() if ln.strip() and not _GENERIC.search(ln)]
    chosen = [ln for ln in lines if _ERRORISH.search(ln)][:max_lines] or lines[-max_lines:]
    return " | ".join(ln[:300] for ln in chosen)


class FFmpegError(EspcnVideoError):
    """An ffmpeg child failed: carries the command, its exit status and its stderr tail."""

    def __init__(self, role: str, cmd: Sequence[str], returncode: int, stderr_tail: str) -> None:
        self.role = role
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        tail = summarize_stderr(stderr_tail)
        super().__init__(f"ffmpeg {role} failed ({describe_returncode(returncode)})" + (f": {tail}" if tail else ""))

    def command_line(self) -> str:
        """The failed command as a shell line (the CLI adds it to the error under -v)."""
        return shlex.join(self.cmd)


class StageError(EspcnVideoError):
    """The first error of a pipeline stage, named by stage and frame."""

    def __init__(self, stage: str, frame_index: int | None, cause: BaseException) -> None:
        self.stage = stage
        self.frame_index = frame_index
        self.cause = cause
        where = f"{stage} stage" + (f" at frame {frame_index}" if frame_index is not None else "")
        if isinstance(cause, EspcnVideoError):
            msg = f"{cause} ({where})"
        else:
            msg = f"{where} failed: {type(cause).__name__}: {cause}"
        super().__init__(msg)
        self.exit_code = getattr(cause, "exit_code", 1)


class WorkerSetupError(EspcnVideoError):
    """A Dask worker lacks what the tasks need: the input, a writable output folder, ffmpeg, the package."""
