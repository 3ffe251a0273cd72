"""Finishing touches on rendered audio: loudness normalisation (ITU-R BS.1770 via pyloudnorm) and click-free fades.

Both work in place on float32 arrays shaped (frames, channels), the layout `render.audio` produces.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_SECONDS = 0.4  # BS.1770 gating block: pyloudnorm refuses anything shorter
ANTI_DENORMAL = 1e-12  # -240 dBFS: far below 16-bit resolution (3e-5) and BS.1770's -70 LUFS gate


def measure_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, K-weighted and gated); -inf for silence.

    Audio shorter than one 400 ms gating block is measured as if followed by silence up to one block: the
    loudness of that block, which is what a listener hears of so short a sound.
    """
    import pyloudnorm  # ~0.1 s (scipy): only when a render is normalised

    block = math.ceil(BLOCK_SECONDS * sample_rate) + 1
    if len(audio) < block:
        audio = np.concatenate([audio, np.zeros((block - len(audio), audio.shape[1]), dtype=audio.dtype)])
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio))


def normalize_loudness(audio: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """Scale `audio` in place to `target_lufs` integrated loudness; silence is left as it is.

    While measuring, an inaudible ±`ANTI_DENORMAL` pattern at the Nyquist frequency is added in place (and taken
    away after): FluidSynth writes exact zeros once every note has died away, on which BS.1770's IIR weighting
    filters ring down into subnormal floats and run ~10× slower (measuring a 10-minute render took 20 s, not 2 s).
    """
    _add_nyquist_pattern(audio, ANTI_DENORMAL)
    loudness = measure_loudness(audio, sample_rate)
    _add_nyquist_pattern(audio, -ANTI_DENORMAL)
    if math.isfinite(loudness):
        audio *= np.float32(10 ** ((target_lufs - loudness) / 20))
    return audio


def fade_edges(audio: np.ndarray, sample_rate: int, fade_in_ms: float, fade_out_ms: float) -> np.ndarray:
    """Raised-cosine ramps in place: from exactly 0 over `fade_in_ms`, and down to exactly 0 over `fade_out_ms`.

    A render that starts or stops mid-waveform clicks; a half-cosine ramp has no corner at either end, so it adds
    none of its own. Ramps longer than half the audio are shortened to half.
    """
    half = len(audio) // 2
    for milliseconds, at_end in ((fade_in_ms, False), (fade_out_ms, True)):
        frames = min(round(milliseconds * sample_rate / 1000), half)
        if frames < 2:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, frames))).astype(np.float32)[:, np.newaxis]
        if at_end:
            audio[-frames:] *= ramp[::-1]
        else:
            audio[:frames] *= ramp
    return audio


def _add_nyquist_pattern(audio: np.ndarray, amplitude: float) -> None:
    audio[0::2] += np.float32(amplitude)
    audio[1::2] -= np.float32(amplitude)
