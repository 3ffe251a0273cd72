"""Melody Transformer: a decoder-only next-step model over the shared 16th-note token encoding.

    x_t      = token_embedding(tokens[t]) + position_embedding(positions[t]) + style_embedding(style)
    logits_t = head(norm(blocks(x_0 .. x_t)))                                      → distribution of tokens[t + 1]

As for the LSTM, `positions[t]` is the bar position of step t + 1 (the step being predicted). Each block is pre-norm:
`x + attention(norm(x))`, then `x + mlp(norm(x))`. Attention is causal, with rotary position embeddings (RoPE) on
queries and keys, so scores depend only on the distance between two steps.

**Local attention.** Step t attends to steps t - context + 1 .. t: the last `config.context` steps, itself included.
This one rule holds everywhere, which makes the KV cache exact:
- training windows are at most `context` steps long: plain causal attention (the fast fused kernel);
- scoring a longer tune attends block by block (each block of queries against itself and the block before), so
  memory grows with time · context, not time²;
- sampling prefills the context in one forward pass, then feeds one step at a time. The cache keeps the rotated keys
  and the values of the last `context` steps in a ring buffer per layer: a new step overwrites the slot of the step
  that has just left its window. Because RoPE keys carry their own position, nothing is recomputed when the window
  slides, and cached sampling gives the logits of a full forward pass over the whole sequence (within float error).
  Several takes continuing the same context (`generate_many`) share its prefill: the cache is then copied to every
  take, and all takes step together as one batch.
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
from musegen_core.models.style import Style, StyleEmbedding, style_rows, unconditioned_rows

FAMILY = "transformer"


@dataclass(frozen=True)
class TransformerConfig(StrictConfig):
    """Hyper-parameters of `MelodyTransformer`; every field is JSON-native so it round-trips through `config.json`."""

    vocab_size: int = encoding.VOCAB_SIZE  # tokens in and out: REST, HOLD, NOTE_ON + pitch
    positions: int = encoding.MAX_BAR_STEPS  # distinct position-in-bar indices
    dim: int = 192  # width of the residual stream and of every embedding
    heads: int = 6  # attention heads; dim / heads must be even (RoPE rotates pairs of channels)
    layers: int = 3  # transformer blocks
    mlp_ratio: int = 4  # each block's MLP is dim → mlp_ratio · dim → dim
    context: int = 512  # attention window in steps (each step sees at most this many, itself included)
    rope_base: float = 10000.0  # RoPE base: channel pair i turns by position · base^(-2i / head width)
    dropout: float = 0.1  # dropout on the embeddings, attention output and MLP output (training only)
    styles: tuple[str, ...] = ()  # style labels the model is conditioned on, in index order; () = unconditioned

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim / heads must be a whole even number (received dim {self.dim}, heads {self.heads})")
        if self.context < 1:
            raise ValueError(f"context must be ≥ 1 step (received {self.context})")


PRESETS = {
    "transformer-small": TransformerConfig(),  # ~1.4 M parameters, 5.5 MB fp32, ~260 ms per 256 CPU steps
    "transformer-tiny": TransformerConfig(dim=16, heads=2, layers=2, mlp_ratio=2, context=8, dropout=0.0),  # tests
}


class KVCache:
    """Rotated keys and values of the last `context` steps of every layer, in ring buffers (slot = step % context).

    `steps` counts the steps read so far: it is the RoPE position of the next step. A cache for a sequence of at most
    `length` < `context` steps holds only `length` slots (its ring never wraps): a batch of many takes then does not
    allocate and copy `context` slots per row.
    """

    def __init__(
        self,
        config: TransformerConfig,
        batch: int,
        device: torch.device,
        dtype: torch.dtype,
        length: int | None = None,
    ) -> None:
        slots = config.context if length is None else min(length, config.context)
        shape = (config.layers, batch, config.heads, slots, config.dim // config.heads)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.window, self.steps = config.context, 0

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention output of the new steps' (batch, heads, time, head) q/k/v, which are then stored. Takes a
        prefill (any time, empty cache) or one step; the step sees every filled slot, as all lie in its window."""
        slots, time = self.keys.shape[3], q.shape[2]
        if self.steps == 0:
            self._check_room(time)
            kept = torch.arange(max(0, time - slots), time, device=q.device)  # the last `slots` (≤ window) steps
            self.store(layer, kept % slots, k[:, :, kept], v[:, :, kept])
            return local_attention(q, k, v, self.window)
        if time != 1:
            raise ValueError(f"a KV cache reads a prefill, then one step at a time (received {time} steps)")
        slot, filled = self.next_slot()
        self.store(layer, slot, k[:, :, 0], v[:, :, 0])
        return F.scaled_dot_product_attention(q, self.keys[layer][:, :, :filled], self.values[layer][:, :, :filled])

    def next_slot(self) -> tuple[int, int]:
        """Ring slot of the next step, and how many slots it attends to (the filled ones, its own included)."""
        self._check_room(1)
        slots = self.keys.shape[3]
        return self.steps % slots, min(self.steps + 1, slots)

    def _check_room(self, time: int) -> None:
        """Refuse to read `time` more steps into a short cache (fewer slots than the window) that they overflow."""
        slots = self.keys.shape[3]
        if slots < self.window and self.steps + time > slots:
            raise ValueError(f"this KV cache holds {slots} steps (received step {self.steps + time})")

    def repeat(self, takes: int) -> None:
        """Copy every batch row `takes` times, in a row (row r becomes rows r·takes .. r·takes + takes − 1): several
        takes continue the sequence read so far."""
        self.keys = self.keys.repeat_interleave(takes, dim=1)
        self.values = self.values.repeat_interleave(takes, dim=1)

    def store(self, layer: int, slots: torch.Tensor | int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write keys and values of (batch, heads, [steps,] head) into the ring slots of one layer."""
        self.keys[layer][:, :, slots] = k
        self.values[layer][:, :, slots] = v


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Causal attention of (batch, heads, time, head) q/k/v where step t sees steps t - window + 1 .. t."""
    time = q.shape[2]
    if time <= window:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    blocks = []
    for start in range(0, time, window):  # queries start .. stop-1 need keys from start - window + 1 at the earliest
        stop, low = min(time, start + window), max(0, start - window + 1)
        query_at = torch.arange(start, stop, device=q.device)[:, None]
        key_at = torch.arange(low, stop, device=q.device)[None]
        visible = (key_at <= query_at) & (key_at > query_at - window)  # (queries, keys)
        blocks.append(
            F.scaled_dot_product_attention(q[:, :, start:stop], k[:, :, low:stop], v[:, :, low:stop], visible)
        )
    return torch.cat(blocks, dim=2)


def rope_frequencies(head_dim: int, base: float, device: torch.device) -> torch.Tensor:
    """(head_dim / 2,) radians per step of each rotated channel pair: base^(-2i / head_dim)."""
    return base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)


def rope_tables(head_dim: int, base: float, start: int, time: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """cos and sin, each (time, head_dim / 2), of the rotation angles of steps start .. start + time - 1."""
    steps = torch.arange(start, start + time, device=device, dtype=torch.float32)
    angles = steps[:, None] * rope_frequencies(head_dim, base, device)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + head/2) of (..., time, head) `x` by their step's angles."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.heads, self.context = config.heads, config.context
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.proj = nn.Linear(config.dim, config.dim, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...], cache: KVCache | None, layer: int):
        batch, time, dim = x.shape
        qkv = self.qkv(x).view(batch, time, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        (q, k), v = apply_rope(qkv[:2], *rope), qkv[2]  # each (batch, heads, time, head)
        y = local_attention(q, k, v, self.context) if cache is None else cache.attend(layer, q, k, v)
        return self.dropout(self.proj(y.transpose(1, 2).reshape(batch, time, dim)))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.dim
        self.attention_norm, self.attention = nn.LayerNorm(config.dim), SelfAttention(config)
        self.mlp_norm = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.dim, hidden), nn.GELU("tanh"), nn.Linear(hidden, config.dim), nn.Dropout(config.dropout)
        )

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...], cache: KVCache | None, layer: int):
        x = x + self.attention(self.attention_norm(x), rope, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class MelodyTransformer(sampling.SamplesMany, nn.Module):
    """Token + position-in-bar (+ style) embeddings → pre-norm blocks with local RoPE attention → linear head."""

    family = FAMILY

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.styles = config.styles
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.position_embedding = nn.Embedding(config.positions, config.dim)
        self.style_embedding = StyleEmbedding(config.styles, config.dim) if config.styles else None
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)
        self.apply(_init_weights)
        for name, parameter in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(parameter, std=0.02 / (2 * config.layers) ** 0.5)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        styles: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache | None]:
        """Next-step logits for every step.

        Args:
            tokens: (batch, time) int64 tokens of steps 0 .. time-1 (continuing the cache's steps, if given).
            positions: (batch, time) int64 bar positions of steps 1 .. time (the steps being predicted).
            styles: (batch,) int64 style rows (see `StyleEmbedding`), None = any style; ignored without styles.
            cache: a `KVCache` to read the steps into (a prefill, then one step at a time), or None.

        Returns:
            logits (batch, time, vocab) — row t scores the token of step t + 1 — and the cache.
        """
        batch, time = tokens.shape
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        if self.style_embedding is not None:
            x = x + self.style_embedding(styles, batch)[:, None]
        start = cache.steps if cache is not None else 0
        rope = rope_tables(self.config.dim // self.config.heads, self.config.rope_base, start, time, tokens.device)
        x = self.dropout(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, cache, layer)
        if cache is not None:
            cache.steps += time
        return self.head(self.norm(x)), cache

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
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Sample one take of `steps` tokens continuing `context` per generator, all takes in one batch after one
        shared prefill of the context (call on a model in eval mode, as `load_checkpoint` gives).

        Args:
            context: (time,) int64 tokens of the context steps (time ≥ 1).
            positions: (time + steps,) int64 bar positions of every context and generated step.
            steps: number of tokens to sample.
            generators: one seeded CPU generator per take, drawing one token per step; take i is the take `generate`
                writes with generator i (same seed and inputs → same tokens, within float rounding of the batch).
            temperature, top_p: see `sampling.apply_temperature` / `sampling.nucleus`.
            style: index into `self.styles`, a `StyleMix` of two, or None for any style (the only choice without
                styles).
            steering: (positions, vocab) logit biases by position in bar (`controls.steering_table`), or None.
            guidance: classifier-free guidance towards `style` (`sampling.guided`; 1 = plain conditioning).
            use_cache: False re-reads the whole sequence every step (same tokens, ~6× slower: for tests/benches).

        Returns:
            (takes, steps) int64 tokens on the CPU.
        """
        if len(positions) != len(context) + steps or len(context) < 1:
            raise ValueError(f"need ≥ 1 context token and len(context) + steps positions (received {len(positions)})")
        device, takes, known = self.head.weight.device, sampling.count_takes(generators), len(context)
        rows = style_rows(self.style_embedding, style, FAMILY, device)
        any_rows = unconditioned_rows(self.style_embedding, style, guidance, device)
        reader = _Reader(self, context, positions.cpu(), _stacked(self, rows, any_rows), takes, use_cache)
        tokens = torch.cat([context.cpu().expand(takes, -1), torch.zeros(takes, steps, dtype=torch.int64)], dim=1)
        for step in range(known, known + steps):
            bias = sampling.steering_row(steering, int(positions[step]))
            styled, plain = reader.last[:takes], reader.last[takes:] if any_rows is not None else None
            logits = sampling.guided(styled, plain, guidance)
            tokens[:, step] = sampling.next_tokens(logits, temperature, top_p, generators, bias)
            if step + 1 < known + steps:
                reader.advance(tokens[:, : step + 1])
        return tokens[:, known:]


def _stacked(model: MelodyTransformer, rows: torch.Tensor | None, any_rows: torch.Tensor | None):
    """The style rows the context is read under: `rows` alone, or with guidance the styled row and the "any style"
    row (as mixing weights when either is a blend)."""
    if any_rows is None:
        return rows
    if rows.is_floating_point():
        any_rows = F.one_hot(any_rows, rows.shape[1]).to(rows.dtype)
    return torch.cat([rows, any_rows])


class _Reader:
    """The takes being sampled, read under one style row each — with guidance, rows 0 .. takes-1 read every take
    styled and rows takes .. 2·takes-1 read it again under "any style": the last step's (rows, vocab) logits, and the
    KV cache (or none: then every step reads the whole sequence again).

    The context is read once under its 1 or 2 style rows (`_stacked`), then its logits and cache are copied to every
    take.
    """

    def __init__(
        self,
        model: MelodyTransformer,
        context: torch.Tensor,
        positions: torch.Tensor,
        styles: torch.Tensor | None,
        takes: int,
        use_cache: bool,
    ) -> None:
        weight = model.head.weight
        self.model, self.positions, self.groups = model, positions, 1 if styles is None else len(styles)
        self.styles = None if styles is None else styles.repeat_interleave(takes, dim=0)
        self.cache = (
            KVCache(model.config, self.groups, weight.device, weight.dtype, len(positions)) if use_cache else None
        )
        logits, _ = model(*self._inputs(context[None].expand(self.groups, -1)), styles, self.cache)  # prefill
        self.last = logits[:, -1].repeat_interleave(takes, dim=0)
        self.stepper = None
        if self.cache is not None:
            self.cache.repeat(takes)
            self.stepper = _Stepper(model, self.styles)

    def _inputs(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, time) tokens of steps 0 .. time-1 and the bar positions of steps 1 .. time, on the model's device."""
        positions = self.positions[None, 1 : tokens.shape[1] + 1].expand(len(tokens), -1)
        device = self.model.head.weight.device
        return tokens.to(device), positions.to(device)

    def advance(self, tokens: torch.Tensor) -> None:
        """Read the last of every take's (takes, time) tokens so far."""
        rows = tokens.repeat(self.groups, 1)  # every take once per style group, as the cache's rows
        if self.stepper is not None:
            self.last = self.stepper.step(rows[:, -1], int(self.positions[tokens.shape[1]]), self.cache)
        else:
            self.last = self.model(*self._inputs(rows), self.styles)[0][:, -1]


class _Stepper:
    """One cached step without `nn.Module` overhead: plain matrix products on (rows, dim) rows, the same maths as
    `MelodyTransformer.forward` with a cache (~3× faster on a CPU, where a step is ~80 small ops). Eval only."""

    def __init__(self, model: MelodyTransformer, styles: torch.Tensor | None) -> None:
        """`styles`: every row's style row(s) as `MelodyTransformer.forward` takes them (None = any style)."""
        config, self.model = model.config, model
        embedding = model.style_embedding
        self.style = None if embedding is None else embedding(styles, 1)  # (rows, dim), or (1, dim) for any style
        self.heads, self.scale = config.heads, (config.dim // config.heads) ** -0.5
        self.frequencies = rope_frequencies(config.dim // config.heads, config.rope_base, model.head.weight.device)

    def step(self, tokens: torch.Tensor, position: int, cache: KVCache) -> torch.Tensor:
        """Read one token per row ((rows,) int64, with the bar position of the step to predict) into `cache`;
        (rows, vocab) logits."""
        model, batch, dim, device = self.model, len(tokens), self.model.config.dim, self.frequencies.device
        x = model.token_embedding.weight[tokens.to(device)] + model.position_embedding.weight[position]
        if self.style is not None:
            x = x + self.style  # after the position, as in `forward`
        angles = torch.tensor([float(cache.steps)], device=device) * self.frequencies  # = rope_tables
        cos, sin = angles.cos(), angles.sin()
        slot, filled = cache.next_slot()
        for layer, block in enumerate(model.blocks):
            h = _norm(x, block.attention_norm)
            qkv = (h @ block.attention.qkv.weight.T).view(batch, 3, self.heads, -1)
            (q, k), v = apply_rope(qkv[:, :2], cos, sin).unbind(1), qkv[:, 2]  # (batch, heads, head) each
            cache.keys[layer, :, :, slot], cache.values[layer, :, :, slot] = k, v
            keys, values = cache.keys[layer, :, :, :filled], cache.values[layer, :, :, :filled]  # (b, heads, n, head)
            weights = torch.softmax((keys @ q[..., None]).squeeze(-1) * self.scale, dim=-1)  # (batch, heads, n)
            out = (weights[:, :, None] @ values).reshape(batch, dim)
            x = x + out @ block.attention.proj.weight.T
            up, down = block.mlp[0], block.mlp[2]
            hidden = F.gelu(torch.addmm(up.bias, _norm(x, block.mlp_norm), up.weight.T), approximate="tanh")
            x = x + torch.addmm(down.bias, hidden, down.weight.T)
        cache.steps += 1
        return torch.addmm(model.head.bias, _norm(x, model.norm), model.head.weight.T)


def _norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
