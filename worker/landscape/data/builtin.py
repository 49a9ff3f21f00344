"""The built-in datasets, generated or shipped with a dependency: ``digits`` and the Hidden Manifold Model."""

from __future__ import annotations

from typing import Any

import numpy as np

from toroid.worker.landscape.data.arrays import Dataset, check_int, make_dataset, standardize_option

# --------------------------------------------------------------------------------------------------
# digits


def load_digits(standardize: str = "feature") -> Dataset:
    """scikit-learn's 8x8 digits, a fixed stratified 80/20 split (seed 0), standardized per pixel."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = bunch.data.reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_train, x_test = standardize_option("digits", x_train, x_test, standardize)
    return make_dataset("digits", {"standardize": standardize}, x_train, y_train, x_test, y_test, 10)


# --------------------------------------------------------------------------------------------------
# Hidden Manifold Model


#: Caps of the Hidden Manifold Model (inclusive): each size option; the largest array of the generator in elements,
#: ``(P_train + P_test) x max(N, D)`` and ``N x D`` (float64: 160 MB, three such arrays per split); its work,
#: ``(P_train + P_test) x N x D`` multiply-adds of projecting the latent vectors (a few seconds).
HMM_CAPS = {"D": 10_000, "N": 10_000, "P_train": 100_000, "P_test": 100_000}
HMM_MAX_ELEMENTS = 20_000_000
HMM_MAX_WORK = 20_000_000_000


def check_hmm(D: Any, N: Any, P_train: Any, P_test: Any, seed: Any) -> tuple[int, int]:
    """Refuse HMM options outside the caps, naming the cap (the API answers 422); returns (P_train, P_test)."""
    for key, value in (("D", D), ("N", N), ("P_train", P_train), ("P_test", P_test)):
        check_int("hmm", key, value, 1)
        if value > HMM_CAPS[key]:
            raise ValueError(f"dataset 'hmm': option {key}={value} is above its cap of {HMM_CAPS[key]:,}")
    check_int("hmm", "seed", seed, 0)
    samples, elements = P_train + P_test, max((P_train + P_test) * max(N, D), N * D)
    for what, value, cap in (("(P_train + P_test) x max(N, D) and N x D", elements, HMM_MAX_ELEMENTS),
                             ("(P_train + P_test) x N x D", samples * N * D, HMM_MAX_WORK)):
        if value > cap:
            raise ValueError(f"dataset 'hmm': {what} = {value:,} is above the cap of {cap:,} (the generator's "
                             "arrays and work): use fewer samples or smaller N, D")
    return int(P_train), int(P_test)


def load_hmm(D: int = 501, N: int = 1001, P_train: int = 1503, P_test: int = 2000, seed: int = 0) -> Dataset:
    """Hidden Manifold Model (Goldt et al. 2020), as used in docs/method.md §9.

    ``F`` (N x D), the teacher ``w*`` (D) and the latent vectors come from one
    ``numpy.random.default_rng(seed)``, drawn in that order, so a seed fixes the dataset.
    Inputs are +-1 and not standardized; labels are ``(sign(w* . xi) + 1) / 2`` in {0, 1}. Caps: ``check_hmm``.
    """
    check_hmm(D, N, P_train, P_test, seed)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((N, D))
    teacher = rng.standard_normal(D)

    def sample(p: int) -> tuple[np.ndarray, np.ndarray]:
        xi = rng.standard_normal((p, D))
        x = np.where(xi @ features.T / np.sqrt(D) >= 0, 1.0, -1.0)
        y = (xi @ teacher >= 0).astype(np.int64)
        return x, y

    x_train, y_train = sample(P_train)
    x_test, y_test = sample(P_test)
    opts = {"D": D, "N": N, "P_train": P_train, "P_test": P_test, "seed": seed}
    return make_dataset("hmm", opts, x_train, y_train, x_test, y_test, 2)


def info_hmm(D: int = 501, N: int = 1001, P_train: int = 1503, P_test: int = 2000, seed: int = 0):
    """``((N,), 2)`` once the options pass the caps."""
    check_hmm(D, N, P_train, P_test, seed)
    return (int(N),), 2
