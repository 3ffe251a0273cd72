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
"""

from __future__ import annotations

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

    `steps` counts the steps read so far: it is the RoPE position of the next step.
    """

    def __init__(self, config: TransformerConfig, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        shape = (config.layers, batch, config.heads, config.context, config.dim // config.heads)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.steps = 0

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention output of the new steps' (batch, heads, time, head) q/k/v, which are then stored. Takes a
        prefill (any time, empty cache) or one step; the step sees every filled slot, as all lie in its window."""
        window, time = self.keys.shape[3], q.shape[2]
        if self.steps == 0:
            kept = torch.arange(max(0, time - window), time, device=q.device)  # the last `window` steps
            self.store(layer, kept % window, k[:, :, kept], v[:, :, kept])
            return local_attention(q, k, v, window)
        if time != 1:
            raise ValueError(f"a KV cache reads a prefill, then one step at a time (received {time} steps)")
        filled = min(self.steps + 1, window)
        self.store(layer, self.steps % window, k[:, :, 0], v[:, :, 0])
        return F.scaled_dot_product_attention(q, self.keys[layer][:, :, :filled], self.values[layer][:, :, :filled])

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


class MelodyTransformer(nn.Module):
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
    def generate(
        self,
        context: torch.Tensor,
        positions: torch.Tensor,
        steps: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        style: Style = None,
        steering: torch.Tensor | None = None,
        guidance: float = 1.0,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Sample `steps` tokens that continue `context` (call on a model in eval mode, as `load_checkpoint` gives).

        Args:
            context: (time,) int64 tokens of the context steps (time ≥ 1).
            positions: (time + steps,) int64 bar positions of every context and generated step.
            steps: number of tokens to sample.
            temperature, top_p: see `sampling.apply_temperature` / `sampling.nucleus`.
            generator: seeded CPU generator; the same seed and inputs give the same tokens.
            style: index into `self.styles`, a `StyleMix` of two, or None for any style (the only choice without
                styles).
            steering: (positions, vocab) logit biases by position in bar (`controls.steering_table`), or None.
            guidance: classifier-free guidance towards `style` (`sampling.guided`; 1 = plain conditioning).
            use_cache: False re-reads the whole sequence every step (same tokens, ~6× slower: for tests/benches).

        Returns:
            (steps,) int64 tokens on the CPU.
        """
        if len(positions) != len(context) + steps or len(context) < 1:
            raise ValueError(f"need ≥ 1 context token and len(context) + steps positions (received {len(positions)})")
        device, known = self.head.weight.device, len(context)
        rows = style_rows(self.style_embedding, style, FAMILY, device)
        tokens = torch.cat([context, torch.zeros(steps, dtype=torch.int64)]).to(device)
        positions = positions.to(device)
        any_rows = unconditioned_rows(self.style_embedding, style, guidance, device)
        reader = _Reader(self, tokens, positions, known, _stacked(self, rows, any_rows), use_cache)  # one batch
        chosen = torch.empty(steps, dtype=torch.int64)
        for step in range(steps):
            bias = sampling.steering_row(steering, int(positions[known]))
            logits = sampling.guided(reader.last[0], reader.last[1] if any_rows is not None else None, guidance)
            chosen[step] = tokens[known] = token = sampling.next_token(logits, temperature, top_p, generator, bias)
            known += 1
            if step + 1 < steps:
                reader.advance(token, tokens, positions, known)
        return chosen


def _stacked(model: MelodyTransformer, rows: torch.Tensor | None, any_rows: torch.Tensor | None):
    """The style rows of one sampling batch: `rows` alone, or with guidance the styled row and the "any style" row
    (as mixing weights when either is a blend)."""
    if any_rows is None:
        return rows
    if rows.is_floating_point():
        any_rows = F.one_hot(any_rows, rows.shape[1]).to(rows.dtype)
    return torch.cat([rows, any_rows])


class _Reader:
    """The sequence being sampled, read under one style row per batch entry (two with guidance: styled, any style):
    the last step's (batch, vocab) logits, and the KV cache (or none: then every step reads the whole sequence
    again)."""

    def __init__(self, model: MelodyTransformer, tokens, positions, known: int, rows, use_cache: bool) -> None:
        weight = model.head.weight
        self.model, self.rows, self.batch = model, rows, 1 if rows is None else len(rows)
        self.cache = KVCache(model.config, self.batch, weight.device, weight.dtype) if use_cache else None
        logits, _ = model(*self._inputs(tokens, positions, known), rows, self.cache)  # prefill
        self.last, self.stepper = logits[:, -1], _Stepper(model, rows, self.batch) if use_cache else None

    def _inputs(self, tokens, positions, known: int) -> tuple[torch.Tensor, torch.Tensor]:
        return tokens[None, :known].expand(self.batch, -1), positions[None, 1 : known + 1].expand(self.batch, -1)

    def advance(self, token: int, tokens, positions, known: int) -> None:
        """Read `token`, the last of the first `known` tokens."""
        if self.stepper is not None:
            self.last = self.stepper.step(token, int(positions[known]), self.cache)
        else:
            self.last = self.model(*self._inputs(tokens, positions, known), self.rows)[0][:, -1]


class _Stepper:
    """One cached step without `nn.Module` overhead: plain matrix products on (batch, dim) rows, the same maths as
    `MelodyTransformer.forward` with a cache (~3× faster on a CPU, where a step is ~80 small ops). Eval only."""

    def __init__(self, model: MelodyTransformer, style_rows: torch.Tensor | None, batch: int = 1) -> None:
        config, self.model = model.config, model
        self.tokens = model.token_embedding.weight[None]  # (1 or batch, vocab, dim), the style vectors added below
        if model.style_embedding is not None:
            self.tokens = self.tokens + model.style_embedding(style_rows, batch)[:, None]
        self.heads, self.scale = config.heads, (config.dim // config.heads) ** -0.5
        self.frequencies = rope_frequencies(config.dim // config.heads, config.rope_base, self.tokens.device)

    def step(self, token: int, position: int, cache: KVCache) -> torch.Tensor:
        """Read one token (with the bar position of the step to predict) into `cache`; (batch, vocab) logits."""
        model, batch, dim = self.model, cache.keys.shape[1], self.tokens.shape[2]
        x = (self.tokens[:, token] + model.position_embedding.weight[position]).expand(batch, dim)
        angles = torch.tensor([float(cache.steps)], device=self.frequencies.device) * self.frequencies  # = rope_tables
        cos, sin = angles.cos(), angles.sin()
        window = cache.keys.shape[3]
        slot, filled = cache.steps % window, min(cache.steps + 1, window)
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
