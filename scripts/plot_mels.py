#!/usr/bin/env python3
"""Draw the log-mel spectrograms of an input clip and of its m2l reconstruction, one
above the other, into a PNG (for docs/MODEL_CARD.md). Needs matplotlib (`m2l_cli[plot]`).

    python scripts/plot_mels.py --model model.safetensors --clip song.flac \
        --offset 30 --seconds 8 -o docs/mels.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from m2l_cli import Codec  # noqa: E402
from m2l_cli.evaluation import naive_codec, read_clip  # noqa: E402
from m2l_cli.evaluation.metrics import log_mel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    audio, rate = read_clip(args.clip, offset=args.offset, max_seconds=args.seconds)
    codec = Codec.load(args.model)
    decoded = codec.decode(codec.encode(audio, rate))
    panels = {
        f"input: {args.clip.name}": audio,
        f"m2l ({codec.model_name})": decoded,
        "naive 689 Hz codec (same number budget)": naive_codec(audio, rate),
    }
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 8), sharex=True)
    for axis, (title, signal) in zip(axes, panels.items(), strict=True):
        mel = log_mel(signal.mean(axis=0, keepdims=True), rate)[0].numpy()
        axis.imshow(
            mel,
            origin="lower",
            aspect="auto",
            vmin=-5,
            vmax=mel.max(),
            cmap="magma",
            extent=(0, signal.shape[1] / rate, 0, mel.shape[0]),
        )
        axis.set_title(title)
        axis.set_ylabel("mel band")
    axes[-1].set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(args.output, dpi=60)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
