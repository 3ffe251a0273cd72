"""Melody GAN: a MidiNet-style bar-conditional generator trained adversarially (WGAN-GP, see `training/gan_train.py`).

The model works on 16-step chunks of the shared token encoding — one bar of 4/4 or 2/2. Given the previous chunk
(encoded by a small convolutional *conditioner*), a noise vector z and a style, the generator outputs a distribution
over the token vocabulary at each of the 16 steps (a relaxed one-hot grid: softmax of its logits):

    conditioner:  previous bar (16,) tokens → embeddings + step embeddings → conv1d × 2  → features (C, 16)
    generator:    [z ; style ; mean of features] → linear → (C, 16) ; concat features → conv1d × 3 → logits (16, vocab)
    critic:       (previous bar one-hot, bar relaxed one-hot, style) → conv1d × 3 → linear → score   (training only)
                  asked with the "any style" row, a second linear head names the bar's style (AC-GAN, training only)

Only the generator and conditioner are shipped; the critic lives in the training run. There is no likelihood
(`has_likelihood = False`). `generate` (and `generate_many`, several takes at once) samples bar by bar, each step's
token drawn from the generator's softmax (temperature and top-p as for the other families), then conditions the next
bar on the sampled one.

Meters: a chunk starts at every bar line and 16 steps into bars longer than 16; the generator always writes 16 steps
and the chunk's length of them is kept (2/4: 8, 3/4 and 6/8: 12, 6/4: 16 + 8). Training pairs are cut at the same
chunk starts in every meter (`training/gan_train.bar_pairs`), so the model has seen each meter's accent patterns.
(The v1 checkpoint was trained on 4/4 and 2/2 tunes only.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from musegen_core import encoding
from musegen_core.models import sampling
from musegen_core.models.config import StrictConfig
from musegen_core.models.style import Style, StyleEmbedding, repeat_rows, style_rows, unconditioned_rows

FAMILY = "gan"
BAR = 16  # steps the generator writes per chunk: one bar of 4/4 or 2/2, at most one bar of other meters


@dataclass(frozen=True)
class GANConfig(StrictConfig):
    """Hyper-parameters of `MelodyGAN` (and of its training critic); JSON-native fields for `config.json`."""

    vocab_size: int = encoding.VOCAB_SIZE  # tokens in and out: REST, HOLD, NOTE_ON + pitch
    noise_dim: int = 64  # z dimensions
    token_dim: int = 32  # conditioner's token embedding width
    channels: int = 192  # conv channels of conditioner and generator
    critic_channels: int = 192  # conv channels of the critic (not shipped)
    styles: tuple[str, ...] = ()  # style labels, in index order; () = unconditioned
    style_dim: int = 16  # style embedding width (unused without styles)


PRESETS = {
    "gan-small": GANConfig(),  # ~1.4 M generator parameters, ~5.5 MB fp32: the shipped folk model
    "gan-tiny": GANConfig(noise_dim=8, token_dim=8, channels=16, critic_channels=16, style_dim=4),  # tests
}


def _conv(inputs: int, outputs: int) -> nn.Conv1d:
    return nn.Conv1d(inputs, outputs, kernel_size=3, padding=1)


class MelodyGAN(sampling.SamplesMany, nn.Module):
    """The shipped part of the GAN: conditioner + generator (+ style table)."""

    family = FAMILY
    has_likelihood = False  # an implicit model: no per-step distribution over whole tunes to score

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.styles = config.styles
        width, style_dim = config.channels, config.style_dim if config.styles else 0
        self.style_embedding = StyleEmbedding(config.styles, config.style_dim) if config.styles else None
        self.token_embedding = nn.Embedding(config.vocab_size, config.token_dim)
        self.step_embedding = nn.Parameter(torch.randn(config.token_dim, BAR) * 0.02)
        self.conditioner = nn.Sequential(_conv(config.token_dim, width), nn.LeakyReLU(0.2), _conv(width, width))
        self.project = nn.Linear(config.noise_dim + style_dim + width, width * BAR)
        self.body = nn.ModuleList([_conv(2 * width, width), _conv(width, width), _conv(width, width)])
        self.head = nn.Conv1d(width, config.vocab_size, kernel_size=1)

    def forward(self, previous: torch.Tensor, noise: torch.Tensor, styles: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the next bar.

        Args:
            previous: (batch, 16) int64 tokens of the previous bar.
            noise: (batch, noise_dim) float z.
            styles: (batch,) int64 style rows (see `StyleEmbedding`), None = any style; ignored without styles.

        Returns:
            (batch, 16, vocab) logits; softmax over the last axis is the generated relaxed one-hot bar.
        """
        features = self.conditioner(self.token_embedding(previous).transpose(1, 2) + self.step_embedding)  # (B, C, 16)
        parts = [noise, features.mean(dim=2)]
        if self.style_embedding is not None:
            parts.append(self.style_embedding(styles, len(previous)))
        hidden = F.leaky_relu(self.project(torch.cat(parts, dim=1)), 0.2).view(len(previous), -1, BAR)
        hidden = F.leaky_relu(self.body[0](torch.cat([hidden, features], dim=1)), 0.2)
        for layer in self.body[1:]:
            hidden = hidden + F.leaky_relu(layer(hidden), 0.2)  # residual
        return self.head(hidden).transpose(1, 2)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.inference_mode()
    def generate_many(
        self,
        context: torch.Tensor,
        positions: torch.Tensor,
        steps: int,
        *,
        generators: Sequence[torch.Generator | None],
        temperature: float = 1.0,
        top_p: float = 1.0,
        style: Style = None,
        steering: torch.Tensor | None = None,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """Sample one take of `steps` tokens continuing `context` per generator, chunk by chunk (a chunk starts at
        every bar line and after 16 steps; see the module docstring), each conditioned on the 16 tokens before it.

        Args:
            context: (time,) int64 tokens (time ≥ 1; fewer than 16 are padded with rests on the left).
            positions: (time + steps,) int64 bar positions of every context and generated step.
            steps: number of tokens to sample.
            generators: one seeded CPU generator per take, for its z and its token draws; take i is the take
                `generate` writes with generator i (same seed and inputs → same tokens).
            temperature, top_p: applied to each step's logits (see `models/sampling.py`).
            style: index into `self.styles`, a `StyleMix` of two, or None for any style.
            steering: (positions, vocab) logit biases by position in bar (`controls.steering_table`), or None.
            guidance: classifier-free guidance towards `style` (`sampling.guided`; 1 = plain conditioning), with the
                same noise for the styled and the "any style" pass.

        Returns:
            (takes, steps) int64 tokens on the CPU.
        """
        if len(positions) != len(context) + steps or len(context) < 1:
            raise ValueError(f"need ≥ 1 context token and len(context) + steps positions (received {len(positions)})")
        takes, device = sampling.count_takes(generators), self.head.weight.device
        rows = repeat_rows(style_rows(self.style_embedding, style, FAMILY, device), takes)
        any_rows = repeat_rows(unconditioned_rows(self.style_embedding, style, guidance, device), takes)
        padded = torch.cat([torch.full((BAR,), encoding.REST, dtype=torch.int64), context.cpu()])
        history = padded[None].expand(takes, -1)
        chosen, done = [], 0
        generated = positions[len(context) :].tolist()
        for length in chunk_lengths(generated):
            noise = torch.cat([torch.randn(1, self.config.noise_dim, generator=g) for g in generators]).to(device)
            previous = history[:, -BAR:].to(device)
            logits = self(previous, noise, rows)[:, :length].float().cpu()
            if any_rows is not None:
                logits = sampling.guided(logits, self(previous, noise, any_rows)[:, :length].float().cpu(), guidance)
            bias = None if steering is None else steering[generated[done : done + length]]
            shaped = sampling.shape(logits, temperature, top_p, bias)
            tokens = torch.stack([sampling.sample(take, g) for take, g in zip(shaped, generators, strict=True)])
            chosen.append(tokens)
            history, done = torch.cat([history, tokens], dim=1), done + length
        return torch.cat(chosen, dim=1) if chosen else torch.empty(takes, 0, dtype=torch.int64)


def chunk_lengths(positions: list[int]) -> list[int]:
    """Split generated steps into chunks: a new chunk at every bar line (position 0) and after `BAR` steps.

    >>> chunk_lengths([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1])  # 3/4: a 12-step chunk, then 2 steps
    [12, 2]
    """
    lengths: list[int] = []
    for index, position in enumerate(positions):
        if index == 0 or position == 0 or lengths[-1] == BAR:
            lengths.append(0)
        lengths[-1] += 1
    return lengths


class Critic(nn.Module):
    """WGAN critic over (previous bar, bar, style): unbounded score, higher = more like a real bar. Training only.

    With styles it also has an auxiliary classifier head (AC-GAN, Odena et al. 2017): `style_logits` reads the
    features of a bar given the "any style" row, so it must tell the style from the notes alone; the generator is
    trained to make it name the requested style (see `training/gan_train.py`)."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        width, vocab = config.critic_channels, config.vocab_size
        self.style_embedding = StyleEmbedding(config.styles, config.style_dim) if config.styles else None
        style_dim = config.style_dim if config.styles else 0
        self.read_previous = nn.Linear(vocab, width // 2, bias=False)
        self.read_bar = nn.Linear(vocab, width // 2, bias=False)
        self.step_embedding = nn.Parameter(torch.randn(width, BAR) * 0.02)
        self.body = nn.Sequential(
            _conv(width + style_dim, width),
            nn.LeakyReLU(0.2),
            _conv(width, width),
            nn.LeakyReLU(0.2),
            nn.Conv1d(width, width, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.score = nn.Linear(width * BAR // 2, 1)
        self.style_head = nn.Linear(width * BAR // 2, len(config.styles)) if config.styles else None

    def features(self, previous: torch.Tensor, bar: torch.Tensor, styles: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, width · 8) features of (batch, 16, vocab) one-hot `previous` and relaxed one-hot `bar`."""
        grid = torch.cat([self.read_previous(previous), self.read_bar(bar)], dim=2).transpose(1, 2)  # (B, C, 16)
        grid = grid + self.step_embedding
        if self.style_embedding is not None:
            style = self.style_embedding(styles, len(bar))[:, :, None].expand(-1, -1, BAR)
            grid = torch.cat([grid, style], dim=1)
        return self.body(grid).flatten(1)

    def forward(self, previous: torch.Tensor, bar: torch.Tensor, styles: torch.Tensor | None = None) -> torch.Tensor:
        """(batch,) critic scores."""
        return self.score(self.features(previous, bar, styles))[:, 0]

    def style_logits(self, previous: torch.Tensor, bar: torch.Tensor) -> torch.Tensor:
        """(batch, styles) logits of which style the (previous bar, bar) pairs are in, judged without a style."""
        if self.style_head is None:
            raise ValueError("this critic has no styles to name")
        return self.style_head(self.features(previous, bar, None))


def gradient_penalty(
    critic: Critic, previous: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, styles: torch.Tensor | None
) -> torch.Tensor:
    """WGAN-GP term E[(‖∇ critic(x̂)‖₂ − 1)²] at random interpolates x̂ between real and fake bars (scalar)."""
    mix = torch.rand(len(real), 1, 1, device=real.device)
    between = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(previous, between, styles).sum(), between, create_graph=True)
    return ((gradient.flatten(1).norm(dim=1) - 1) ** 2).mean()
