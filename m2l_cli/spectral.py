"""The complex STFT representation of both papers, and its exact inverse.

Forward: STFT (hop 512, periodic Hann window of 2048), keep the lowest 1024 bins (drop
Nyquist), compress each bin to beta * |c|^alpha * exp(i angle c), split into two
channels (real, imaginary): [..., 2, 1024, frames].

Framing is chosen so chunks stand alone: frame j is centred on sample 512 j, samples
outside the signal are zeros, and a signal of n * 32768 samples gives exactly n * 64
frames. So the frames of chunk i need only samples [i*32768 - 1024, (i+1)*32768 + 1024),
and a long file can be analysed window by window with the same result as all at once.
The inverse is a windowed overlap-add divided by the summed squared window, fed in
order, which is how the decoder writes audio while it decodes.
"""

from __future__ import annotations

import torch

from .config import ModelConfig


class SpectralTransform:
    """Waveform <-> amplitude-compressed complex spectrogram, for one model config."""

    def __init__(self, config: ModelConfig) -> None:
        self.hop = config.hop_length
        self.n_fft = config.n_fft
        self.bins = config.frequency_bins
        self.alpha = config.amplitude_alpha
        self.beta = config.amplitude_beta
        self.context = self.n_fft // 2
        self.window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64)

    def analyse(self, samples: torch.Tensor) -> torch.Tensor:
        """[..., context + hop*frames + context] samples -> [..., 2, bins, frames].

        The input carries `context` (1024) extra samples on each side: the true
        neighbours of the segment, or zeros at the ends of the signal.
        """
        lead = samples.shape[:-1]
        flat = samples.reshape(-1, samples.shape[-1]).double()
        window = self.window.to(flat.device)
        spectrum = torch.stft(
            flat, self.n_fft, self.hop, window=window, center=False, return_complex=True
        )[:, : self.bins, :-1]
        parts = torch.view_as_real(spectrum).movedim(-1, -3)  # [n, 2, bins, frames]
        channels = (parts * self._gain(parts, self.beta, self.alpha)).float()
        return channels.reshape(*lead, *channels.shape[-3:])

    @staticmethod
    def _gain(parts: torch.Tensor, scale: float, power: float) -> torch.Tensor:
        """scale |c|^(power - 1) for the complex bins c whose (real, imag) are `parts`
        [..., 2, bins, frames]; 0 where c = 0. Multiplying c by it maps |c| to
        scale |c|^power and keeps the phase, with no angle or complex exp computed."""
        magnitude = torch.hypot(parts[..., 0, :, :], parts[..., 1, :, :]).unsqueeze(-3)
        gain = scale * magnitude.pow(power - 1.0)
        return torch.where(magnitude > 0, gain, 0.0)

    def to_complex(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """Undo the amplitude compression: [..., 2, bins, frames] -> complex STFT bins."""
        parts = spectrogram.double()
        inverse = 1.0 / self.alpha
        restored = parts * self._gain(parts, self.beta**-inverse, inverse)
        return torch.complex(restored[..., 0, :, :], restored[..., 1, :, :])

    def frames_to_segments(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """[..., 2, bins, frames] -> windowed frames [..., frames, n_fft] ready to overlap-add."""
        spectrum = self.to_complex(spectrogram)
        # irfft zero-pads the missing Nyquist bin itself (n = n_fft wants n_fft/2 + 1).
        frames = torch.fft.irfft(spectrum.transpose(-1, -2), n=self.n_fft, dim=-1)
        return frames * self.window.to(frames.device)


class OverlapAdd:
    """Turns spectrogram chunks, fed in time order, back into waveform samples.

    `push` returns the samples that no later frame can change; `finish` the rest.
    Exact inverse of `SpectralTransform.analyse` (up to float rounding).
    """

    def __init__(self, transform: SpectralTransform, lead_shape: tuple[int, ...]) -> None:
        self.transform = transform
        hop, context = transform.hop, transform.context
        # The buffer starts `context` samples before sample 0 (frame 0's left edge).
        self.signal = torch.zeros(*lead_shape, transform.n_fft - hop, dtype=torch.float64)
        self.weight = torch.zeros(transform.n_fft - hop, dtype=torch.float64)
        self.square_window = transform.window.pow(2)
        self.to_drop = context

    def _add(self, buffer: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Overlap-add [..., frames, n_fft] onto the buffer's tail: 4 shifted adds."""
        hop, n_fft = self.transform.hop, self.transform.n_fft
        count = frames.shape[-2]
        overlap = n_fft - hop
        grown = torch.cat([buffer, buffer.new_zeros(*buffer.shape[:-1], count * hop)], dim=-1)
        start = grown.shape[-1] - overlap - count * hop
        quarters = frames.reshape(*frames.shape[:-1], n_fft // hop, hop)
        for quarter in range(n_fft // hop):
            piece = quarters[..., quarter, :].reshape(*frames.shape[:-2], count * hop)
            offset = start + quarter * hop
            grown[..., offset : offset + count * hop] += piece
        return grown

    def push(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """Add [..., 2, bins, frames]; return the finished samples [..., n]."""
        frames = self.transform.frames_to_segments(spectrogram)
        self.signal = self._add(self.signal, frames)
        window_frames = self.square_window.expand(frames.shape[-2], -1)
        self.weight = self._add(self.weight, window_frames)
        overlap = self.transform.n_fft - self.transform.hop
        return self._emit(self.signal.shape[-1] - overlap)

    def finish(self) -> torch.Tensor:
        """Everything still buffered (the tail after the last frame's centre)."""
        return self._emit(self.signal.shape[-1])

    def _emit(self, end: int) -> torch.Tensor:
        ready = self.signal[..., :end] / self.weight[:end].clamp_min(1e-8)
        self.signal, self.weight = self.signal[..., end:], self.weight[end:]
        drop = min(self.to_drop, ready.shape[-1])
        self.to_drop -= drop
        return ready[..., drop:].float()
