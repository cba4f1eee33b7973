"""The espcn-video command group; commands are imported when they run, so `--help` and
`--version` start without torch or OpenVINO."""

from __future__ import annotations

import importlib

import click

from espcn_video import __version__

# name -> (module, attribute, the first sentence of its help, shown by `espcn-video --help`;
# a test keeps it equal to what the command says of itself)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "upscale": (
        "espcn_video.cli.upscale_cmd",
        "upscale_cmd",
        "Super-resolve IN into OUT: ESPCN on Y, bicubic U and V, audio and subtitles kept.",
    ),
    "compare": (
        "espcn_video.cli.compare_cmd",
        "compare_cmd",
        "Show the baseline and ESPCN side by side, split or as a difference, in one video.",
    ),
    "batch": ("espcn_video.cli.upscale_cmd", "batch_cmd", "Upscale many files on Dask: each file is one task."),
    "psnr": (
        "espcn_video.cli.psnr_cmd",
        "psnr_cmd",
        "Score SR methods on reference clips: LR made by --degrade, PSNR/SSIM per frame vs REF.",
    ),
    "bench": (
        "espcn_video.cli.bench_cmd",
        "bench_cmd",
        "Time decode -> SR -> encode, the SR stage alone, bicubic and SRCNN on the same frames.",
    ),
    "train": (
        "espcn_video.cli.model_cmds",
        "train_cmd",
        "Train an ESPCN (or SRCNN) preset on the Y channel; JSON summary on stdout.",
    ),
    "eval": (
        "espcn_video.cli.model_cmds",
        "eval_cmd",
        "PSNR/SSIM of a preset vs bicubic on HR image folders (SR-paper conventions).",
    ),
    "quantize": (
        "espcn_video.cli.model_cmds",
        "quantize_cmd",
        "Fine-tune a preset's int8 twin for the int8 engine and record what int8 and bf16 cost.",
    ),
    "presets": (
        "espcn_video.cli.model_cmds",
        "presets_cmd",
        "List the shipped presets: Set5/Set14 PSNR, training LR, default use, MACs and fps.",
    ),
    "export": (
        "espcn_video.cli.model_cmds",
        "export_cmd",
        "Write a preset as an ONNX graph: input 'lr' (1, 1, H, W) -> output 'hr' (1, 1, rH, rW), any H and W.",
    ),
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command is run or asked for its own help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)  # as click.Group does
        # A stand-in command per name gives click's own truncation without importing the real one.
        rows = [(name, click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="espcn-video")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log every ffmpeg command line and exit status on stderr; a failed ffmpeg's error shows its command.",
)
def main(verbose: bool) -> None:
    """Real-time ESPCN video super-resolution on the CPU, as an ffmpeg filter."""
    from espcn_video.cli.common import set_verbose

    set_verbose(verbose)
