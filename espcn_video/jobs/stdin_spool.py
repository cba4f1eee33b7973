"""Stdin keeps its audio: the bytes of a piped input go to the decoder and to a file beside OUT.

A pipe can be read once, and the encoder takes audio, subtitles and chapters from a second read
of the input. So while the decoder reads the pipe, a thread copies every chunk into a hidden file
beside OUT as well; when the video is done, its streams are muxed in from there (a stream copy).
A y4m stream carries only video and is not spooled; it is still pumped to the decoder from here,
because the look at its first bytes (a peek) has taken them from the pipe into our own buffer.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO

CHUNK_BYTES = 1 << 20


def stdin_has_only_video(stream: BinaryIO | None = None) -> bool:
    """A y4m pipe (its first bytes say so) has no other streams to keep."""
    source = stream or sys.stdin.buffer
    peek = getattr(source, "peek", None)  # a buffered pipe can look ahead without consuming
    return peek is not None and bytes(peek(9)[:9]) == b"YUV4MPEG2"


class StdinSpool:
    """Pumps `stream` (our stdin) into the decoder's stdin pipe and into `path` (None: no file)."""

    def __init__(self, path: Path | None, stream: BinaryIO | None = None) -> None:
        self.path = path
        self._stream = stream or sys.stdin.buffer
        read_fd, self._write_fd = os.pipe()
        self.decoder_stdin: IO[bytes] = os.fdopen(read_fd, "rb")  # handed to the decoder
        self._thread = threading.Thread(target=self._pump, name="espcn-stdin", daemon=True)
        self.complete = False  # the whole stream reached the file (EOF seen, nothing failed)

    def __enter__(self) -> StdinSpool:
        self._file = self.path.open("wb") if self.path is not None else None
        self._thread.start()
        return self

    def _pump(self) -> None:
        feeding = True
        try:
            read = getattr(self._stream, "read1", self._stream.read)
            while chunk := read(CHUNK_BYTES):
                if self._file is not None:
                    self._file.write(chunk)
                if feeding:
                    feeding = self._feed(chunk)
            self.complete = True
        except OSError:
            pass  # a full disk or a closed stdin: the run says the streams were not kept
        finally:
            if self._file is not None:
                self._file.close()
            if feeding:
                os.close(self._write_fd)

    def _feed(self, chunk: bytes) -> bool:
        """Write all of `chunk` to the decoder; False once it stopped reading (it ended or failed)."""
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._write_fd, view) :]
        except BrokenPipeError:
            os.close(self._write_fd)
            return False
        return True

    def wait(self, timeout_s: float = 30.0) -> bool:
        """After the decoder ended: True when the whole input is in the file."""
        self._thread.join(timeout_s)
        return self.complete and not self._thread.is_alive()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.decoder_stdin.closed:
            self.decoder_stdin.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
