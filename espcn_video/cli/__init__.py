"""The espcn-video command group."""

from __future__ import annotations

import click

from espcn_video import __version__
from espcn_video.cli.upscale_cmd import batch_cmd, upscale_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="espcn-video")
def main() -> None:
    """Real-time ESPCN video super-resolution on the CPU, as an ffmpeg filter."""


main.add_command(upscale_cmd)
main.add_command(batch_cmd)
try:  # the model commands land in their own module
    from espcn_video.cli.model_cmds import eval_cmd, presets_cmd, train_cmd
    main.add_command(train_cmd)
    main.add_command(eval_cmd)
    main.add_command(presets_cmd)
except ImportError:  # pragma: no cover - transitional
    pass
try:
    from espcn_video.cli.psnr_cmd import psnr_cmd
    main.add_command(psnr_cmd)
except ImportError:  # pragma: no cover - transitional
    pass
try:
    from espcn_video.cli.bench_cmd import bench_cmd
    main.add_command(bench_cmd)
except ImportError:  # pragma: no cover - transitional
    pass
