"""FFmpegProcess: one ffmpeg child whose stderr is always drained and which is always reaped."""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, Protocol

from espcn_video.errors import EspcnVideoError, FFmpegError, FFmpegNotFound, describe_returncode

log = logging.getLogger("espcn_video.ffmpeg")

try:
    import fcntl
except ImportError:  # Windows: pipes keep their default size
    fcntl = None  # type: ignore[assignment]  # the module is absent there, its name stays

_F_SETPIPE_SZ = 1031  # Linux: bigger pipes mean fewer wake-ups per HD frame
_PR_SET_PDEATHSIG = 1
PIPE_BYTES = 1 << 20
STDERR_TAIL_LINES = 40


class StderrRouter(Protocol):
    """Takes the data lines a child writes to stderr beside its log (e.g. framecrc timestamps)."""

    def route(self, line: str) -> bool:
        """True when the line was data for the router, not a log line for the tail."""

    def close(self) -> None:
        """stderr ended: no more lines will come."""


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec hook that makes the child die with us, even when we are SIGKILLed (Linux).

    The children live in their own session (a terminal's Ctrl-C must reach only us), so nothing
    else would stop an encoder that outlives its parent and keeps writing a partial file.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return hook


def _grow_pipe(stream: IO[bytes] | None) -> None:
    if stream is None or fcntl is None:
        return
    try:
        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # capped by /proc/sys/fs/pipe-max-size or not Linux: the default still works


class FFmpegProcess:
    """Popen in a context manager: stderr drained into a bounded tail, exit checked, kill and reap.

    `stdin`/`stdout` are "pipe", "devnull", "inherit" or an open file object (a stdin file
    object is handed over: closed in this process once the child has it).
    The child gets its own session so a terminal's Ctrl-C reaches only us; we stop it.
    """

    def __init__(
        self,
        role: str,
        cmd: Sequence[str],
        *,
        stdin: str | IO[bytes] = "devnull",
        stdout: str | IO[bytes] = "devnull",
        stderr_router: StderrRouter | None = None,
    ) -> None:
        self.role = role
        self._router = stderr_router
        self.cmd = list(cmd)
        self._stdin_spec = stdin
        self._stdout_spec = stdout
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._proc: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None
        self.killed = False

    @staticmethod
    def _spec(value: str | IO[bytes]) -> int | IO[bytes] | None:
        if value == "pipe":
            return subprocess.PIPE
        if value == "devnull":
            return subprocess.DEVNULL
        if value == "inherit":
            return None
        assert not isinstance(value, str), f"unknown stream spec {value!r}"
        return value

    def __enter__(self) -> FFmpegProcess:
        log.debug("ffmpeg %s: %s", self.role, shlex.join(self.cmd))
        try:
            self._proc = subprocess.Popen(
                self.cmd,
                stdin=self._spec(self._stdin_spec),
                stdout=self._spec(self._stdout_spec),
                stderr=subprocess.PIPE,
                start_new_session=True,
                bufsize=PIPE_BYTES,
                preexec_fn=die_with_parent_hook(),
            )
        except FileNotFoundError as exc:
            raise FFmpegNotFound(f"cannot run ffmpeg {self.cmd[0]}: {exc.strerror}") from exc
        except OSError as exc:
            raise EspcnVideoError(f"cannot start ffmpeg {self.role}: {exc}") from exc
        if not isinstance(self._stdin_spec, str):
            # The child has its own copy of the read end: with ours closed, a writer feeding the
            # pipe sees EPIPE when the child dies instead of blocking forever.
            self._stdin_spec.close()
        _grow_pipe(self._proc.stdout)
        _grow_pipe(self._proc.stdin)
        self._drain = threading.Thread(target=self._drain_stderr, name=f"{self.role}-stderr", daemon=True)
        self._drain.start()
        return self

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        try:
            for raw in iter(self._proc.stderr.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip()
                if self._router is None or not self._router.route(line):
                    self._tail.append(line)
        finally:
            if self._router is not None:
                self._router.close()

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None, "use FFmpegProcess as a context manager"
        return self._proc

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def stderr_tail(self) -> str:
        if self._drain is not None:
            self._drain.join(timeout=2.0)
        return "\n".join(self._tail)

    def close_stdin(self) -> None:
        """EOF for the encoder: it finalises the file. A dead reader is reported by wait()."""
        if self._proc is not None and self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def kill(self) -> None:
        """Stop the child now; its non-zero exit is then not an error."""
        if self._proc is not None and self._proc.poll() is None:
            self.killed = True
            try:
                self._proc.kill()
            except ProcessLookupError:
                pass

    def wait(self, timeout_s: float | None = None) -> int:
        return self.proc.wait(timeout=timeout_s)

    def error(self) -> FFmpegError:
        return FFmpegError(self.role, self.cmd, self.proc.returncode, self.stderr_tail())

    def check(self, timeout_s: float | None = None) -> None:
        """Wait for the exit and raise FFmpegError unless it was 0 (or we killed it)."""
        code = self.wait(timeout_s)
        if code != 0 and not self.killed:
            raise self.error()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is None:
            return
        if exc_type is not None:
            self.kill()
        self.close_stdin()
        try:
            self._proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.kill()
            self._proc.wait()
        log.debug(
            "ffmpeg %s: %s%s",
            self.role,
            describe_returncode(self._proc.returncode),
            " (stopped by us)" if self.killed else "",
        )
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._drain is not None:
            self._drain.join(timeout=2.0)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
