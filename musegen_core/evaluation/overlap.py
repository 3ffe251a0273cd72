"""Yang & Lerch (2018) "relative measurement": how well a generated set's features match a reference set's.

For one feature with values `g_1..g_n` (generated) and `r_1..r_m` (reference), each a vector (see `features`):

- intra-set distances of a set: `‖x_i − x_j‖` for every pair `i < j` (the paper's exhaustive leave-one-out
  cross-validation gives each pair twice, which leaves the distribution unchanged);
- inter-set distances: `‖g_i − r_j‖` for every `i, j`;
- each set of distances is smoothed into a PDF by a Gaussian kernel density estimate with Scott's bandwidth
  `h = σ · N^(−1/5)` (σ: sample standard deviation of the N distances), as `scipy.stats.gaussian_kde` does;
- the **overlap area** `OA(p, q) = ∫ min(p(x), q(x)) dx` ∈ [0, 1] between the reference intra-set PDF and the
  inter-set PDF: 1 when generated melodies sit among the reference ones as the reference ones sit among themselves.
  We also report OA(reference intra-set, generated intra-set): whether the generated set is as varied as the real one.

Two departures from the reference implementation (mgeval), both so that identical sets give OA = 1: the integral
runs over the whole real line (a grid reaching 4 bandwidths beyond the extreme distances; mgeval cuts it at the
extreme samples, losing the kernel mass below a distance of 0), and the bandwidth is at least 1/256 of the distances'
span, so a set of equal distances (σ = 0) is a narrow bump rather than a singular KDE.
"""

from __future__ import annotations

import math

import numpy as np

GRID_POINTS = 1024  # evaluation points of the overlap integral (trapezoid rule)
TAIL_BANDWIDTHS = 4.0  # the grid reaches this many bandwidths beyond the extreme distances
MIN_BANDWIDTH_SPAN = 1 / 256  # bandwidth floor, as a fraction of the span of all distances compared
CHUNK = 4096  # kernel centres evaluated at once (bounds memory: GRID_POINTS × CHUNK floats)


def intra_set_distances(values: np.ndarray) -> np.ndarray:
    """Distances between every pair of rows of a (n, dimension) array: shape (n·(n−1)/2,)."""
    first, second = np.triu_indices(len(values), k=1)
    return np.linalg.norm(values[first] - values[second], axis=1)


def inter_set_distances(values: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distances between every row of `values` (n, d) and every row of `others` (m, d): shape (n·m,)."""
    return np.linalg.norm(values[:, None, :] - others[None, :, :], axis=2).ravel()


def scott_bandwidth(samples: np.ndarray) -> float:
    """Scott's rule for a 1-D Gaussian KDE: `σ · N^(−1/5)` (0 for fewer than 2 samples)."""
    if len(samples) < 2:
        return 0.0
    return float(np.std(samples, ddof=1) * len(samples) ** -0.2)


def kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian KDE of 1-D samples evaluated on `grid`: `p(x) = 1/(N h √(2π)) Σ_k exp(−(x − s_k)² / 2h²)`.

    Equal samples (distances of integer features repeat a lot) are evaluated once, weighted by their count.
    """
    centres, counts = np.unique(np.round(samples, 9), return_counts=True)
    density = np.zeros_like(grid)
    for start in range(0, len(centres), CHUNK):
        z = (grid[:, None] - centres[None, start : start + CHUNK]) / bandwidth
        density += np.exp(-0.5 * z * z) @ counts[start : start + CHUNK]
    return density / (len(samples) * bandwidth * math.sqrt(2 * math.pi))


def overlap_area(samples: np.ndarray, others: np.ndarray) -> float:
    """∫ min(p, q) of the KDEs of two 1-D sample sets (NaN if either is empty)."""
    if len(samples) == 0 or len(others) == 0:
        return math.nan
    low, high = min(samples.min(), others.min()), max(samples.max(), others.max())
    floor = MIN_BANDWIDTH_SPAN * (high - low if high > low else 1.0)
    bandwidths = max(scott_bandwidth(samples), floor), max(scott_bandwidth(others), floor)
    reach = TAIL_BANDWIDTHS * max(bandwidths)
    grid = np.linspace(low - reach, high + reach, GRID_POINTS)
    p, q = kde(samples, grid, bandwidths[0]), kde(others, grid, bandwidths[1])
    return float(np.trapezoid(np.minimum(p, q), grid))


def feature_overlaps(generated: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per feature: `overlap` = OA(reference intra-set, inter-set) and `intra_overlap` = OA(reference intra-set,
    generated intra-set).

    Args:
        generated, reference: feature name → (melodies, dimension) array (see `features.feature_table`).
    """
    result = {}
    for name, real in reference.items():
        real_intra = intra_set_distances(real)
        result[name] = {
            "overlap": overlap_area(real_intra, inter_set_distances(generated[name], real)),
            "intra_overlap": overlap_area(real_intra, intra_set_distances(generated[name])),
        }
    return result


def mean_overlap(overlaps: dict[str, dict], key: str = "overlap") -> float:
    """Mean of one overlap kind over the features."""
    return float(np.mean([entry[key] for entry in overlaps.values()]))
