"""Evaluation of melody models on held-out tunes: `musegen eval` (see `harness`).

- `features`: musical features of one melody (Yang & Lerch 2018), from tokens;
- `overlap`: their intra-/inter-set distance PDFs and overlap areas;
- `originality`: runs copied from the training corpus (transposition-invariant);
- `takes`: the protocol — which test tunes, primes, references, sampled takes, diversity, speed;
- `harness`: NLL against the n-gram baseline, everything per model, the JSON report;
- `report`: the Markdown tables;
- `style_classifier`: an independent style classifier (no generator's weights) that checks takes' styles.
"""
