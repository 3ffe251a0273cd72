"""Melody LSTM: a MelodyRNN-style next-step model over the shared 16th-note token encoding.

At step t the network reads the token of step t together with the *bar position of step t + 1* (the step it is about
to predict), so it always knows where the next bar line falls, whatever the meter or pickup, and (for a
style-conditioned model) the tune's style vector at every step:

    input_t  = [token_embedding(tokens[t]) ; position_embedding(positions[t]) ; style_embedding(style)]
    logits_t = head(LSTM(input_0 .. input_t))                                      → distribution of tokens[t + 1]

`positions[t]` is the position of step t + 1; `style` is one of `config.styles` or "any style" (see `models/style.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from musegen_core import encoding
from musegen_core.models import sampling
from musegen_core.models.config import StrictConfig
from musegen_core.models.style import Style, StyleEmbedding, style_rows, unconditioned_rows

FAMILY = "lstm"

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, batch, hidden)


@dataclass(frozen=True)
class LSTMConfig(StrictConfig):
    """Hyper-parameters of `MelodyLSTM`; every field is JSON-native so it round-trips through `config.json`."""

    vocab_size: int = encoding.VOCAB_SIZE  # tokens in and out: REST, HOLD, NOTE_ON + pitch
    positions: int = encoding.MAX_BAR_STEPS  # distinct position-in-bar indices
    token_dim: int = 64  # token embedding width
    position_dim: int = 16  # position-in-bar embedding width
    hidden: int = 256  # LSTM hidden and cell width
    layers: int = 2  # stacked LSTM layers
    dropout: float = 0.2  # dropout on embeddings, between LSTM layers and before the head (training only)
    styles: tuple[str, ...] = ()  # style labels the model is conditioned on, in index order; () = unconditioned
    style_dim: int = 16  # style embedding width (unused without styles)

    OPTIONAL_FIELDS = frozenset({"styles", "style_dim"})  # v1 checkpoints predate style conditioning


PRESETS = {
    "lstm-small": LSTMConfig(),  # ~0.9 M parameters, 3.5 MB fp32: the shipped folk model
    "lstm-tiny": LSTMConfig(token_dim=8, position_dim=4, hidden=16, layers=1, dropout=0.0, style_dim=4),  # tests
}


class MelodyLSTM(sampling.SamplesMany, nn.Module):
    """Token + position (+ style) embeddings → stacked LSTM → linear head over the token vocabulary."""

    family = FAMILY

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.styles = config.styles
        self.token_embedding = nn.Embedding(config.vocab_size, config.token_dim)
        self.position_embedding = nn.Embedding(config.positions, config.position_dim)
        self.style_embedding = StyleEmbedding(config.styles, config.style_dim) if config.styles else None
        self.dropout = nn.Dropout(config.dropout)
        between = config.dropout if config.layers > 1 else 0.0
        width = config.token_dim + config.position_dim + (config.style_dim if config.styles else 0)
        self.lstm = nn.LSTM(width, config.hidden, config.layers, batch_first=True, dropout=between)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        state: LSTMState | None = None,
        styles: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LSTMState]:
        """Next-step logits for every step.

        Args:
            tokens: (batch, time) int64 tokens of steps 0 .. time-1.
            positions: (batch, time) int64 bar positions of steps 1 .. time (the steps being predicted).
            state: recurrent state to continue from, or None to start fresh.
            styles: (batch,) int64 style rows (see `StyleEmbedding`), None = any style; ignored without styles.

        Returns:
            logits (batch, time, vocab) — row t scores the token of step t + 1 — and the new state.
        """
        parts = [self.token_embedding(tokens), self.position_embedding(positions)]
        if self.style_embedding is not None:  # the same style vector at every step
            parts.append(self.style_embedding(styles, len(tokens))[:, None].expand(-1, tokens.shape[1], -1))
        hidden, state = self.lstm(self.dropout(torch.cat(parts, dim=-1)), state)
        return self.head(self.dropout(hidden)), state

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
        """Sample one take of `steps` tokens continuing `context` per generator, all takes stepped together after
        reading the context once (call on a model in eval mode, as `load_checkpoint` gives).

        Args:
            context: (time,) int64 tokens of the context steps (time ≥ 1).
            positions: (time + steps,) int64 bar positions of every context and generated step.
            steps: number of tokens to sample.
            generators: one seeded CPU generator (or None: the global RNG) per take; take i is the take `generate`
                writes with generator i (same seed and inputs → same tokens).
            temperature, top_p: see `sampling.apply_temperature` / `sampling.nucleus`.
            style: index into `self.styles`, a `StyleMix` of two, or None for any style (the only choice without
                styles).
            steering: (positions, vocab) logit biases by position in bar (`controls.steering_table`), or None.
            guidance: classifier-free guidance towards `style` (`sampling.guided`; 1 = plain conditioning).

        Returns:
            (takes, steps) int64 tokens on the CPU.
        """
        if len(positions) != len(context) + steps or len(context) < 1:
            raise ValueError(f"need ≥ 1 context token and len(context) + steps positions (received {len(positions)})")
        takes, device = sampling.count_takes(generators), self.head.weight.device
        rows = style_rows(self.style_embedding, style, FAMILY, device)
        context, positions = context.to(device), positions.to(device)
        reader = _Reader(self, context, positions, rows, takes)
        any_rows = unconditioned_rows(self.style_embedding, style, guidance, device)
        plain = _Reader(self, context, positions, any_rows, takes) if any_rows is not None else None
        ahead = positions[len(context) :].tolist()  # the positions of the steps to sample
        chosen = torch.empty(takes, steps, dtype=torch.int64)
        for step, position in enumerate(ahead):
            logits = sampling.guided(reader.last, plain.last if plain else None, guidance)
            bias = sampling.steering_row(steering, position)  # every take is at the same position
            chosen[:, step] = tokens = sampling.next_tokens(logits, temperature, top_p, generators, bias)
            if step + 1 < steps:
                for each in (reader, plain) if plain else (reader,):
                    each.advance(tokens.to(device), ahead[step + 1])
        return chosen


class _Reader:
    """The takes being sampled under one style row: the context read once (a batch of one), then continued in
    `takes` rows; `last` holds the (takes, vocab) logits of each take's next step."""

    def __init__(
        self, model: MelodyLSTM, context: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor | None, takes: int
    ) -> None:
        logits, (h, c) = model(context[None], positions[None, 1 : len(context) + 1], styles=rows)
        extra = model.style_embedding(rows, 1) if model.style_embedding is not None else None
        self.stepper = _Stepper(model, model.lstm, extra, (h.repeat(1, takes, 1), c.repeat(1, takes, 1)))
        self.last = logits[:, -1].expand(takes, -1)

    def advance(self, tokens: torch.Tensor, position: int) -> None:
        self.last = self.stepper.step(tokens, position)


class _Stepper:
    """Steps a batch of sequences through a stacked `nn.LSTM` whose first layer reads [token embedding ; position
    embedding ; extra], `extra` being constant over the steps (the style; a VAE decoder's z too), without
    `nn.LSTM`'s per-call overhead (~0.9 ms a step on a CPU, against ~0.1 ms here). Shared by the LSTM and the VAE
    decoder.

    The first layer's input gates are looked up from tables of every token's and every position's contribution plus
    `extra`'s constant one, and each cell is updated with plain tensor ops (PyTorch's gate order: input, forget,
    cell, output) on (rows, hidden) states. Eval mode only.
    """

    def __init__(self, model: nn.Module, lstm: nn.LSTM, extra: torch.Tensor | None, state: LSTMState) -> None:
        """`model` gives the `token_embedding`, `position_embedding` and `head` around `lstm`; `extra` is (1, width)
        for all rows or (rows, width), None when the first layer reads tokens and positions only; `state` is the
        (layers, rows, hidden) h and c to continue from."""
        split = model.token_embedding.embedding_dim
        end = split + model.position_embedding.embedding_dim
        w_ih = lstm.weight_ih_l0
        self.constant = lstm.bias_ih_l0 + lstm.bias_hh_l0  # (4 * hidden,), or (rows, 4 * hidden) with a per-row extra
        if extra is not None:
            self.constant = self.constant + extra @ w_ih[:, end:].T
        self.token_gates = model.token_embedding.weight @ w_ih[:, :split].T  # (vocab, 4 * hidden)
        self.position_gates = model.position_embedding.weight @ w_ih[:, split:end].T  # (positions, 4 * hidden)
        self.recurrent = [getattr(lstm, f"weight_hh_l{k}").T for k in range(lstm.num_layers)]  # (H, 4H) each
        self.upper = [  # the input weights (H, 4H) and both biases of layers 1 ..
            (getattr(lstm, f"weight_ih_l{k}").T, getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}"))
            for k in range(1, lstm.num_layers)
        ]
        self.h, self.c = list(state[0]), list(state[1])
        self.head = model.head

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Feed one token per row ((rows,) int64, on the model's device) with the bar position of the step to predict
        (the same for every row); returns that step's (rows, vocab) logits."""
        first = self.token_gates[tokens] + self.position_gates[position] + self.constant
        self.h[0], self.c[0] = _cell(torch.addmm(first, self.h[0], self.recurrent[0]), self.c[0])
        for k, (w_ih, bias) in enumerate(self.upper, start=1):
            gates = torch.addmm(torch.addmm(bias, self.h[k - 1], w_ih), self.h[k], self.recurrent[k])
            self.h[k], self.c[k] = _cell(gates, self.c[k])
        return self.head(self.h[-1])


def _cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM cell update from (rows, 4 * hidden) pre-activation gates: returns the new (rows, hidden) h and c."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c
