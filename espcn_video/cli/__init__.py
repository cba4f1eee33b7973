"""The espcn-video command group."""

from __future__ import annotations

import click

from espcn_video import __version__
from espcn_video.cli.bench_cmd import bench_cmd
from espcn_video.cli.model_cmds import eval_cmd, export_cmd, presets_cmd, train_cmd
from espcn_video.cli.psnr_cmd import psnr_cmd
from espcn_video.cli.upscale_cmd import batch_cmd, upscale_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="espcn-video")
def main() -> None:
    """Real-time ESPCN video super-resolution on the CPU, as an ffmpeg filter."""


for command in (upscale_cmd, batch_cmd, psnr_cmd, bench_cmd, train_cmd, eval_cmd, presets_cmd,
                export_cmd):
    main.add_command(command)
