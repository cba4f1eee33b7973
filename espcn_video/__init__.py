"""espcn-video: real-time ESPCN video super-resolution on the CPU, as an ffmpeg filter."""

__version__ = "0.1.0"
