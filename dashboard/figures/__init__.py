"""The dashboard's own Plotly figure builders: API records and result JSON in, ``go.Figure`` out (no HTTP, no Dash).

One module per view (map, paths, flatness, torus, training).

What the study report draws too (sampler and path-kind colours and labels, the layout, Kendall's tau, path
normalization, the local energy vs test error scatter, the distance heatmap) lives in :mod:`toroid.plots`.
Errors arrive as fractions in [0, 1] (the API's convention) and are shown in percent. The builders follow the paper's
plots (docs/method.md):
paths against the distance along the path rescaled to [0, 1] with the barrier (highest train error,
raw max) in the legend (sec. 7); local-energy curves dE_train(sigma) with the std over noise samples as error bars
(sec. 6); distance matrices ordered by sampler (sec. 5); the minima map; the torus slice through two minima on a 3-D
torus and unrolled, and the Gram-Schmidt section through three minima (sec. 7); training curves.
"""

from toroid.dashboard.figures.flatness import distance_heatmap, flatness_curves, kendall_text, order_by_sampler
from toroid.dashboard.figures.map import SELECTION_LABELS, error_text, map_positions, minima_map
from toroid.dashboard.figures.paths import barrier_figure, barrier_rows
from toroid.dashboard.figures.torus import (
    section_contour,
    torus_embedding,
    torus_heatmap,
    torus_partial,
    torus_surface,
)
from toroid.dashboard.figures.training import training_curves

__all__ = [
    "SELECTION_LABELS",
    "barrier_figure",
    "barrier_rows",
    "distance_heatmap",
    "error_text",
    "flatness_curves",
    "kendall_text",
    "map_positions",
    "minima_map",
    "order_by_sampler",
    "section_contour",
    "torus_embedding",
    "torus_heatmap",
    "torus_partial",
    "torus_surface",
    "training_curves",
]
