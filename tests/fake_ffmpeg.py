"""A misbehaving ffmpeg for failure-path tests: real child processes, never mocks.

FAKE_MODE picks the fault; FAKE_REAL_FFMPEG is the real binary used for everything else.
  decoder-dies      decoder sends the header and 2 frames, prints an error, exits 1
  decoder-partial   decoder sends the header, 1 frame and half a frame, exits 0
  stderr-flood      decoder writes 8 MB to stderr while sending every frame, then exits 1
  encoder-no-space  encoder reads about 2 frames, says "No space left on device", exits 1
  decoder-hangs     decoder sends the header and frames, then sleeps forever (for Ctrl-C)
  fail-once         the first decoder (while the file FAKE_ONCE exists) exits 1: a task retry
  kill-worker-once  the first decoder (while FAKE_ONCE exists) SIGKILLs its parent, the Dask worker
  kill-worker-on    every decoder whose arguments contain FAKE_MATCH SIGKILLs its parent (a task
                    that always kills its worker: Dask gives up with KilledWorker)
  fail-last-chunk   the decoder of the last chunk (no end bound) always exits 1
  decoder-slow      decoder sends frame by frame, 0.3 s apart (a run to interrupt)
  encoder-crash-once  the first encoder reading a pipe (while FAKE_ONCE exists) aborts (SIGABRT), as the
                    bundled libx265 now and then does ("free(): invalid next size (fast)")
  encoder-crash     every encoder reading a pipe aborts so
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    real = os.environ["FAKE_REAL_FFMPEG"]
    mode = os.environ.get("FAKE_MODE", "")
    is_decoder = "pipe:1" in args and "yuv4mpegpipe" in args and "pipe:0" not in args
    is_encoder = "pipe:0" in args
    once = os.environ.get("FAKE_ONCE", "")
    if is_decoder and mode in ("fail-once", "kill-worker-once") and once and os.path.exists(once):
        os.unlink(once)
        if mode == "kill-worker-once":
            os.kill(os.getppid(), signal.SIGKILL)
        sys.stderr.write("[fake] injected decoder failure\n")
        return 1
    if is_decoder and mode == "kill-worker-on" and any(os.environ["FAKE_MATCH"] in a for a in args):
        os.kill(os.getppid(), signal.SIGKILL)
        return 1
    if is_decoder and mode == "fail-last-chunk" and any("select=" in a and "*lt(" not in a for a in args):
        sys.stderr.write("[fake] injected failure of the last chunk\n")
        return 1
    if is_decoder and mode.startswith(("decoder", "stderr")):
        return fake_decoder(real, args, mode)
    crash_once = mode == "encoder-crash-once" and once and os.path.exists(once)
    if is_encoder and (crash_once or mode == "encoder-crash"):
        if crash_once:
            os.unlink(once)
        sys.stderr.write("free(): invalid next size (fast)\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGABRT)
    if is_encoder and mode == "encoder-no-space":
        sys.stdin.buffer.read(4096)
        sys.stderr.write("[out#0/mp4] Error writing trailer: No space left on device\n")
        return 1
    os.execv(real, [real, *args])
    return 0


def fake_decoder(real: str, args: list[str], mode: str) -> int:
    proc = subprocess.Popen([real, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if mode in ("decoder-dies", "decoder-partial", "decoder-hangs"):
        # The real decoder runs to its end first, so every frame's timestamp line is on stderr
        # before the cut: the reader then fails on the frames alone, never on a missing
        # timestamp that a killed decoder had not flushed yet (a race, seen once in CI).
        data = proc.stdout.read()
        proc.wait()
        proc.stdout = io.BufferedReader(io.BytesIO(data))  # type: ignore[assignment]
    header = proc.stdout.readline()
    out = sys.stdout.buffer
    out.write(header)
    w = int(header.split(b" W")[1].split()[0])
    h = int(header.split(b" H")[1].split()[0])
    frame = 6 + w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)  # 8-bit 4:2:0 test clips
    if mode == "decoder-dies":
        out.write(proc.stdout.read(2 * frame))
        out.flush()
        sys.stderr.write("[h264 @ 0x1] Invalid NAL unit size (corrupt input)\n")
        proc.kill()
        return 1
    if mode == "decoder-partial":
        out.write(proc.stdout.read(frame + frame // 2))
        out.flush()
        proc.kill()
        return 0
    if mode == "stderr-flood":
        for i in range(100_000):
            sys.stderr.write(f"[flood] warning line {i} " + "x" * 60 + "\n")
        out.write(proc.stdout.read())
        out.flush()
        proc.wait()
        sys.stderr.write("[flood] final error: decoding failed\n")
        return 1
    if mode == "decoder-slow":
        while chunk := proc.stdout.read(frame):
            time.sleep(0.3)
            out.write(chunk)
            out.flush()
        return proc.wait()
    if mode == "decoder-hangs":
        out.write(proc.stdout.read(3 * frame))
        out.flush()
        proc.kill()
        time.sleep(3600)
    return 1


if __name__ == "__main__":
    sys.exit(main())
