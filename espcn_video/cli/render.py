"""Human renderings of results: rich tables and summary lines on stderr. No arithmetic."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_run_summary(console: Console, summary: dict[str, Any], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("stage", "mean ms", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for stage, s in summary["stages"].items():
        table.add_row(stage, f"{s['mean_ms']:.2f}", f"{s['p50_ms']:.2f}", f"{s['p95_ms']:.2f}", f"{s['max_ms']:.2f}")
    console.print(table)
    lr, hr = summary["lr_size"], summary["hr_size"]
    mem = summary["peak_memory"]
    memory = (
        f"; peak memory {mem['python_mb']:.0f} MB (largest ffmpeg {mem['largest_child_mb']:.0f} MB)"
        if mem.get("python_mb") is not None
        else ""
    )
    console.print(
        f"{summary['frames']} frames {lr[0]}x{lr[1]} -> {hr[0]}x{hr[1]} ({summary['method']}) in "
        f"{summary['wall_s']:.2f} s: {summary['fps']:.2f} fps{memory}"
    )
    check = summary.get("output_check") or {}
    if check.get("frames_in_file") is not None:
        written = "images written" if check.get("images") else "frames in the written file"
        line = f"checked: {check['frames_in_file']} {written}, {check['frames_read']} read"
        if check.get("max_time_error_s") is not None:
            line += (
                f"; timestamps within {check['max_time_error_s'] * 1e3:.3f} ms of the input's "
                f"(time base {check['time_base']})"
            )
        console.print(line)
    for note in summary.get("notes", []):
        console.print(f"note: {note}")
