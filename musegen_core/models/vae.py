"""Melody VAE: a MusicVAE-style variational autoencoder over fixed 2-bar windows of the shared token encoding.

A window is `WINDOW = 32` sixteenth steps starting on a bar line — two bars of 4/4 or 2/2, two bars of 3/4 or 6/8
plus 8 steps, four of 2/4 — with the position in the bar of every step as a second input, so one model serves every
meter (MusicVAE's 2-bar models used 4/4 only).

    encoder:  BiLSTM([token_embedding ; position_embedding]) → final states → μ, log σ²        (latent,)
    decoder:  h₀ = tanh(W z);  step t reads [token_embedding(x[t-1]) ; position_embedding(pos[t]) ; z ; style]
              → LSTM → head → distribution of x[t]  (x[-1] is the START token, teacher forcing when training)

The training loss is the negative ELBO with β-annealing and free bits (see `training/vae_train.py`). The ELBO is a
bound on a window's likelihood, not a per-step next-token distribution over whole tunes, so `has_likelihood` is
False and the evaluation harness reports no NLL for this family; the card reports the ELBO in bits per step instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from musegen_core import encoding
from musegen_core.models import sampling
from musegen_core.models.config import StrictConfig
from musegen_core.models.lstm import _Stepper
from musegen_core.models.style import Style, StyleEmbedding, StyleMix, style_rows, unconditioned_rows

FAMILY = "vae"
WINDOW = 32  # sixteenth steps per latent window
START = encoding.VOCAB_SIZE  # decoder input before the first step (an extra embedding row)


@dataclass(frozen=True)
class VAEConfig(StrictConfig):
    """Hyper-parameters of `MelodyVAE`; every field is JSON-native so it round-trips through `config.json`."""

    vocab_size: int = encoding.VOCAB_SIZE  # tokens in and out: REST, HOLD, NOTE_ON + pitch
    positions: int = encoding.MAX_BAR_STEPS  # distinct position-in-bar indices
    token_dim: int = 64  # token embedding width (encoder and decoder share the table)
    position_dim: int = 16  # position-in-bar embedding width
    encoder_hidden: int = 256  # BiLSTM width per direction
    decoder_hidden: int = 384  # decoder LSTM width
    decoder_layers: int = 1  # stacked decoder LSTM layers
    latent: int = 96  # z dimensions
    dropout: float = 0.1  # on embeddings and before the head (training only)
    styles: tuple[str, ...] = ()  # decoder style conditioning, in index order; () = unconditioned
    style_dim: int = 16  # style embedding width (unused without styles)
    # `generate`: each next window's z = the last window's μ + continue_noise × temperature × unit Gaussian. A
    # sampling setting, not a weight: chosen per checkpoint on the *valid* split by `bench/vae_noise.py`.
    continue_noise: float = 0.8
    # `generate.restyle`: the mean latent μ of each style's training windows, in `styles` order (() = not measured;
    # `python -m musegen_core.training.vae_centroids FOLDER` measures them after training). Data, not weights.
    style_centroids: tuple[tuple[float, ...], ...] = ()

    OPTIONAL_FIELDS = frozenset({"continue_noise", "style_centroids"})  # missing in checkpoints written before them

    def __post_init__(self) -> None:
        if not 0.0 <= self.continue_noise <= 10.0:  # also refuses NaN
            raise ValueError(f"continue_noise must be between 0 and 10 (received {self.continue_noise})")
        centroids = tuple(tuple(float(x) for x in row) for row in self.style_centroids)
        object.__setattr__(self, "style_centroids", centroids)
        if centroids and (len(centroids) != len(self.styles) or any(len(row) != self.latent for row in centroids)):
            raise ValueError(f"style_centroids must hold one {self.latent}-d row per style ({len(self.styles)})")


PRESETS = {
    "vae-small": VAEConfig(),  # ~1.6 M parameters, ~6 MB fp32: the shipped folk model
    "vae-tiny": VAEConfig(  # tests
        token_dim=8, position_dim=4, encoder_hidden=16, decoder_hidden=24, latent=8, dropout=0.0, style_dim=4
    ),
}


class MelodyVAE(sampling.SamplesMany, nn.Module):
    """BiLSTM encoder → Gaussian latent → z-conditioned LSTM decoder (+ style) over `WINDOW`-step windows."""

    family = FAMILY
    has_likelihood = False  # the ELBO bounds a window's likelihood; it is no per-step NLL over whole tunes

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.styles = config.styles
        self.token_embedding = nn.Embedding(config.vocab_size + 1, config.token_dim)  # + START
        self.position_embedding = nn.Embedding(config.positions, config.position_dim)
        self.style_embedding = StyleEmbedding(config.styles, config.style_dim) if config.styles else None
        self.dropout = nn.Dropout(config.dropout)
        width = config.token_dim + config.position_dim
        self.encoder = nn.LSTM(width, config.encoder_hidden, batch_first=True, bidirectional=True)
        self.to_latent = nn.Linear(2 * config.encoder_hidden, 2 * config.latent)  # → μ, log σ²
        self.to_state = nn.Linear(config.latent, 2 * config.decoder_layers * config.decoder_hidden)  # → h₀, c₀
        style_width = config.style_dim if config.styles else 0
        self.decoder = nn.LSTM(
            width + config.latent + style_width, config.decoder_hidden, config.decoder_layers, batch_first=True
        )
        self.head = nn.Linear(config.decoder_hidden, config.vocab_size)

    def encode(self, tokens: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, WINDOW) tokens and their own bar positions → μ and log σ², each (batch, latent)."""
        embedded = torch.cat([self.token_embedding(tokens), self.position_embedding(positions)], dim=-1)
        _, (h, _) = self.encoder(self.dropout(embedded))  # h: (2, batch, hidden), forward and backward final states
        return self.to_latent(torch.cat([h[0], h[1]], dim=-1)).chunk(2, dim=-1)

    def decode(
        self,
        z: torch.Tensor,
        previous: torch.Tensor,
        positions: torch.Tensor,
        styles: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Decoder logits (batch, time, vocab) of the steps whose bar positions are `positions` (batch, time), given
        the tokens before them `previous` (batch, time; START first) and z (batch, latent). `state` continues a
        partial decode (None: start from z)."""
        batch, time = previous.shape
        if state is None:
            h0, c0 = torch.tanh(self.to_state(z)).view(batch, 2, self.config.decoder_layers, -1).unbind(1)
            state = (h0.transpose(0, 1).contiguous(), c0.transpose(0, 1).contiguous())
        parts = [self.token_embedding(previous), self.position_embedding(positions), z[:, None].expand(-1, time, -1)]
        if self.style_embedding is not None:
            parts.append(self.style_embedding(styles, batch)[:, None].expand(-1, time, -1))
        hidden, state = self.decoder(self.dropout(torch.cat(parts, dim=-1)), state)
        return self.head(self.dropout(hidden)), state

    def forward(
        self, tokens: torch.Tensor, positions: torch.Tensor, styles: torch.Tensor | None = None, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced reconstruction of (batch, WINDOW) windows: logits (batch, WINDOW, vocab), μ, log σ².
        `sample` draws z = μ + σ·ε (training); False decodes from μ."""
        mu, log_var = self.encode(tokens, positions)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var) if sample else mu
        previous = torch.cat([torch.full_like(tokens[:, :1], START), tokens[:, :-1]], dim=1)
        logits, _ = self.decode(z, previous, positions, styles)
        return logits, mu, log_var

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.inference_mode()
    def sample_window(
        self,
        z: torch.Tensor,
        positions: torch.Tensor,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        style: Style = None,
        greedy: bool = False,
        steering: torch.Tensor | None = None,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """Decode one (latent,) z into (len(positions),) tokens, autoregressively (greedy = most likely token after
        steering; `style`, `steering` and `guidance` as in `generate_many`)."""
        return self._decode_windows(
            z[None], positions, temperature=temperature, top_p=top_p, generators=[generator], style=style,
            greedy=greedy, steering=steering, guidance=guidance,
        )[0]  # fmt: skip

    def _decode_windows(
        self,
        z: torch.Tensor,
        positions: torch.Tensor,
        *,
        temperature: float,
        top_p: float,
        generators: Sequence[torch.Generator | None],
        style: Style,
        greedy: bool,
        steering: torch.Tensor | None,
        guidance: float,
    ) -> torch.Tensor:
        """`sample_window` for a batch: (rows, latent) z, all on the same positions, row i drawn with
        `generators[i]` → (rows, len(positions)) tokens."""
        device = self.head.weight.device
        z = z.to(device)
        decoder = _decoder(self, z, style_rows(self.style_embedding, style, FAMILY, device))
        any_rows = unconditioned_rows(self.style_embedding, style, guidance, device)
        plain = _decoder(self, z, any_rows) if any_rows is not None else None
        chosen = torch.empty(len(z), len(positions), dtype=torch.int64)
        previous = torch.full((len(z),), START, device=device)
        for step, position in enumerate(positions.tolist()):
            logits = decoder.step(previous, position)
            if plain is not None:
                logits = sampling.guided(logits, plain.step(previous, position), guidance)
            bias = sampling.steering_row(steering, position)
            if greedy:
                tokens = (logits.float().cpu() + (0 if bias is None else bias)).argmax(dim=-1)
            else:
                tokens = sampling.next_tokens(logits, temperature, top_p, generators, bias)
            chosen[:, step] = tokens
            previous = tokens.to(device)
        return chosen

    @torch.inference_mode()
    def latent_of(self, tokens: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and σ of one (time,) window — each (latent,) — or of a (rows, time) batch of windows on the same
        positions — each (rows, latent); shorter input is padded with rests at the end to WINDOW steps."""
        tokens, positions = _pad_window(tokens, positions)
        device, rows = self.head.weight.device, tokens.reshape(-1, WINDOW)
        mu, log_var = self.encode(rows.to(device), positions.expand(len(rows), -1).to(device))
        shape = (*tokens.shape[:-1], -1)
        return mu.reshape(shape).cpu(), torch.exp(0.5 * log_var).reshape(shape).cpu()

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
        """Continue `context` by `steps` tokens in one take per generator (the same interface as
        `MelodyLSTM.generate_many`; take i is the take `generate` writes with generator i; call on a model in eval
        mode), one WINDOW at a time, all takes together: each take's next window is decoded from the μ of its last
        WINDOW steps plus `config.continue_noise` × temperature × unit Gaussian (one draw per window from the
        take's generator, before the window's token draws). With a style, a style strength (`guidance`) above 1
        also pulls that z towards the style's centroid (`style_pull`): the decoder's style input alone moves little,
        since z already carries most of what a window sounds like.

        Returns:
            (takes, steps) int64 tokens on the CPU.
        """
        if len(positions) != len(context) + steps or len(context) < 1:
            raise ValueError(f"need ≥ 1 context token and len(context) + steps positions (received {len(positions)})")
        takes = sampling.count_takes(generators)
        tokens, done = context.cpu()[None], 0  # one row (one μ to encode) until the takes part after their first window
        while done < steps:
            recent, end = tokens[:, -WINDOW:], tokens.shape[1]
            mu, _ = self.latent_of(recent, positions[end - recent.shape[1] : end].cpu())
            noise = torch.stack([torch.randn(mu.shape[1], generator=generator) for generator in generators])
            z = self.style_pull(mu + self.config.continue_noise * temperature * noise, style, guidance)
            size = min(WINDOW, steps - done)
            window = self._decode_windows(
                z, positions[end : end + size], temperature=temperature, top_p=top_p, generators=generators,
                style=style, greedy=False, steering=steering, guidance=guidance,
            )  # fmt: skip
            tokens, done = torch.cat([tokens.expand(takes, -1), window], dim=1), done + size
        return tokens.expand(takes, -1)[:, len(context) :]

    def style_pull(self, z: torch.Tensor, style: Style, strength: float) -> torch.Tensor:
        """z moved `pull_share(strength)` of the way towards the centroid of `style` (a mix: the mixed centroids);
        unchanged without a style or measured centroids."""
        if style is None or not self.config.style_centroids:
            return z
        centroids = torch.tensor(self.config.style_centroids, dtype=z.dtype)
        if isinstance(style, StyleMix):
            target = (1 - style.weight) * centroids[style.first] + style.weight * centroids[style.second]
        else:
            target = centroids[self.style_embedding.index(style)]
        return z + pull_share(strength) * (target - z)


def pull_share(strength: float) -> float:
    """How far a continuation's z moves towards the asked style's centroid: none at strength ≤ 1 (as trained),
    half-way at the strongest setting, 4. (This form was picked from the style classifier's hit rates on the test
    excerpts that `bench/controls.py` reports, so the VAE's hit rates there are optimistic.)

    >>> pull_share(1.0), pull_share(2.5), pull_share(4.0)
    (0.0, 0.25, 0.5)
    """
    return max(0.0, strength - 1.0) / 6.0


def _decoder(model: MelodyVAE, z: torch.Tensor, style_rows: torch.Tensor | None) -> _Stepper:
    """A fast stepper over the decoder (`lstm._Stepper`, eval mode only) for (rows, latent) z under one style row:
    started from each row's h₀, c₀ = tanh(W z), its first layer reading z and the style at every step."""
    extra = z
    if model.style_embedding is not None:
        extra = torch.cat([z, model.style_embedding(style_rows, 1).expand(len(z), -1)], dim=1)
    h0, c0 = torch.tanh(model.to_state(z)).view(len(z), 2, model.config.decoder_layers, -1).unbind(1)
    return _Stepper(model, model.decoder, extra, (h0.transpose(0, 1), c0.transpose(0, 1)))


def _pad_window(tokens: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A window of exactly WINDOW steps: (..., time) tokens (one window, or a batch sharing `positions`) truncated,
    or padded with rests whose positions continue the bar count (the position index cycles with the spacing seen; a
    lone step counts on by one)."""
    tokens, positions = tokens[..., :WINDOW], positions[:WINDOW]
    missing = WINDOW - len(positions)
    if missing <= 0:
        return tokens, positions
    bar = int(positions.max()) + 1 if len(positions) else encoding.MAX_BAR_STEPS
    extra = (positions[-1] + 1 + torch.arange(missing)) % bar if len(positions) else torch.arange(missing) % bar
    rests = torch.full((*tokens.shape[:-1], missing), encoding.REST, dtype=tokens.dtype)
    return torch.cat([tokens, rests], dim=-1), torch.cat([positions, extra])


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latent vectors a (t = 0) and b (t = 1); linear where they are parallel."""
    cosine = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-8)
    omega = torch.arccos(cosine.clamp(-1.0, 1.0))
    if float(omega.sin()) < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
