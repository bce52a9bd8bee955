"""Entropy decay: how fast more context lowers next-token loss, the gamma of alpha = gamma / (2 beta).

Why: arXiv 2602.07488 models the loss of predicting a token from the n tokens before it
as L_n = A n^-gamma (offset-free, the paper) or L_n - H_inf = A n^-gamma (with the
entropy-rate floor H_inf, the seed's form). Both are fitted and recorded; one is chosen.

Two estimates of L_n:

* ``per_window_loss`` / ``per_position_loss`` (the default, robust): a causal LM's
  cross-entropy at position n of random windows of length T (kept per window; L_n is
  their mean), so one window gives T - 1 context lengths and the fit has many points.
  Any model that returns ``.logits`` works (HF causal LMs, a tiny GPT trained here).
* ``ngram_conditional_entropy`` (plug-in): H(x_{n+1} | previous n tokens) from counts.
  Biased downward, increasingly so as contexts get rare (a context seen once predicts
  its successor "perfectly"), so orders where most contexts are singletons are dropped.
  On ~1M BPE tokens only a handful of orders survive; an earlier implementation fitted
  gamma = 1.72 on 4 such points. Use it as a cross-check, not as the estimate.

gamma's interval is a bootstrap over the evaluation windows: resample the windows with
replacement, recompute L_n, re-bin, refit (both forms). That is the sampling error of
the estimate from a finite set of windows of this validation text (not of the choice
of text). The earlier interval resampled the ~15 fitted bins of one curve: it measured
how far the curve bends from a power law, not how much the estimate would move with
other windows, and a perfectly sampled curved L_n got a wide "95%" interval. Curves
without windows (plug-in n-gram entropies) get no interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from expspec.kernels.errors import ExpspecError
from expspec.kernels.progress import track
from expspec.kernels.fit.power_law import PowerLawFit, fit_power_law, percentile_interval

GAMMA_FORMS = ("offset_free", "offset")
FIRST_FITTED_CONTEXT = 2  # default window starts at n = 2: see ``default_window``


def per_position_loss(model, tokens, context_len: int, n_windows: int, seed: int = 0,
                      batch_size: int = 8, device: str = "cpu") -> np.ndarray:
    """L_n for n = 1..T-1 (index 0 is n = 1): mean nats of token n+1 given the n before it.

    The mean over windows of ``per_window_loss`` (same arguments, same windows).
    """
    return per_window_loss(model, tokens, context_len, n_windows, seed, batch_size, device).mean(axis=0)


def per_window_loss(model, tokens, context_len: int, n_windows: int, seed: int = 0,
                    batch_size: int = 8, device: str = "cpu") -> np.ndarray:
    """[n_windows, T-1] nats: row i, column n-1 is window i's loss on token n+1 given the n before it.

    Windows of T = context_len tokens start at distinct random offsets of the stream
    (seeded; with replacement only if the stream has fewer offsets than windows). No
    padding, no BOS: position n of a window has exactly n real tokens of context. Kept
    per window so gamma's bootstrap can resample windows without running the model again.
    """
    import torch

    tokens = np.asarray(tokens)
    if context_len < 2:
        raise ExpspecError(f"per_position_loss: context_len must be >= 2, got {context_len}")
    if n_windows < 1 or batch_size < 1:
        raise ExpspecError(f"per_position_loss: n_windows and batch_size must be >= 1, "
                           f"got {n_windows}, {batch_size}")
    offsets = tokens.size - context_len + 1
    if tokens.ndim != 1 or offsets < 1:
        raise ExpspecError(f"per_position_loss: need a 1-D stream of at least {context_len} tokens, "
                           f"got shape {tokens.shape}")
    rng = np.random.default_rng(seed)
    starts = rng.choice(offsets, size=n_windows, replace=n_windows > offsets)
    windows = tokens[starts[:, None] + np.arange(context_len)].astype(np.int64)

    losses = np.empty((n_windows, context_len - 1))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for first in track(range(0, n_windows, batch_size), "per-position loss"):
                batch = torch.from_numpy(windows[first:first + batch_size]).to(device)
                logits = model(batch).logits[:, :-1].float()
                nats = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="none"
                ).view(batch.shape[0], -1)
                losses[first:first + batch.shape[0]] = nats.double().cpu().numpy()
    finally:
        model.train(was_training)
    return losses


@dataclass
class NgramEntropy:
    orders: list[int]  # kept context lengths n (0 = unigram)
    entropy: list[float]  # plug-in H(x_{n+1} | n previous tokens), nats
    singleton_fraction: list[float]  # per kept order: share of distinct contexts seen once
    dropped: list[int]  # orders starved of data (and every longer one)
    n_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)

    def losses_by_n(self) -> dict[int, float]:
        """{n: H_n} for n >= 1, the input ``entropy_decay`` expects."""
        return {n: h for n, h in zip(self.orders, self.entropy) if n >= 1}


def _plugin_entropy(counts: np.ndarray) -> float:
    share = counts / counts.sum()
    return float(-np.sum(share * np.log(share)))


def ngram_conditional_entropy(tokens, max_n: int, starvation: float = 0.98) -> NgramEntropy:
    """Plug-in H(x_{n+1} | x_{t-n+1..t}) for n = 0..max_n, stopping at data starvation.

    H_n = H(context, next) - H(context), both counted over the same N - n positions.
    n-grams get exact integer ids by repeated ``np.unique`` of (id of the (n-1)-gram
    ending one step earlier, next token), so no hashing collisions and O(N log N) per n.
    Biased downward: with few samples per context the plug-in estimate undercounts the
    successor distribution; order n is dropped (with every longer one) when more than
    ``starvation`` of its distinct contexts occur only once.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size < 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ExpspecError("ngram_conditional_entropy: need a 1-D integer stream of >= 2 tokens")
    if max_n < 0 or not 0.0 < starvation <= 1.0:
        raise ExpspecError(f"ngram_conditional_entropy: need max_n >= 0 and 0 < starvation <= 1, "
                           f"got {max_n}, {starvation}")
    _, token_ids = np.unique(tokens, return_inverse=True)
    token_ids = token_ids.astype(np.int64)
    n_symbols = int(token_ids.max()) + 1
    orders, entropy, singletons, dropped = [0], [_plugin_entropy(np.bincount(token_ids))], [0.0], []
    # gram_ids[t] = id of the n-gram ending at t (valid for t >= n - 1); starts as unigrams.
    gram_ids = token_ids
    for n in range(1, max_n + 1):
        if n >= tokens.size:
            dropped.extend(range(n, max_n + 1))
            break
        context = gram_ids[n - 1:-1]  # the n-gram ending just before each predicted token
        _, context_counts = np.unique(context, return_counts=True)
        singleton_share = float(np.mean(context_counts == 1))
        if singleton_share > starvation:
            dropped.extend(range(n, max_n + 1))
            break
        _, joint_ids, joint_counts = np.unique(context * n_symbols + token_ids[n:],
                                               return_inverse=True, return_counts=True)
        orders.append(n)
        entropy.append(_plugin_entropy(joint_counts) - _plugin_entropy(context_counts))
        singletons.append(singleton_share)
        gram_ids = np.concatenate([np.full(n, -1, dtype=np.int64), joint_ids.astype(np.int64)])
    return NgramEntropy(orders, entropy, singletons, dropped, int(tokens.size))


@dataclass
class EntropyDecay:
    form: str  # the chosen form, offset_free | offset
    gamma: float  # gamma of the chosen form
    ci: tuple[float, float] | None  # CI of the chosen gamma
    gamma_offset_free: float
    prefactor_offset_free: float
    r2_offset_free: float
    ci_offset_free: tuple[float, float] | None
    gamma_offset: float  # nan when the offset fit could not be made (fewer than 3 points)
    prefactor_offset: float
    h_inf: float  # the offset form's entropy-rate floor H_inf
    r2_offset: float
    ci_offset: tuple[float, float] | None
    window: tuple[float, float]
    n_points: int
    bins: int = 0  # 0: every context length fitted; else the number of log bins asked for
    fit_n: list = field(default_factory=list)  # the points fitted (bin centres when binned)
    fit_loss: list = field(default_factory=list)
    n_windows: int = 0  # evaluation windows behind the curve (0: a curve without windows)
    n_bootstrap: int = 0  # window resamples asked for (0: no interval)
    n_bootstrap_fitted: int = 0  # resamples whose offset-form fit succeeded
    ci_method: str = "none"  # window bootstrap | none
    samples: list = field(default_factory=list)  # the resamples' gamma of the chosen form

    def to_dict(self) -> dict:
        return asdict(self)


def _as_curve(losses_by_n) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(losses_by_n, Mapping):
        n = np.array(sorted(losses_by_n), dtype=float)
        return n, np.array([losses_by_n[k] for k in sorted(losses_by_n)], dtype=float)
    losses = np.asarray(losses_by_n, dtype=float).ravel()
    return np.arange(1, losses.size + 1, dtype=float), losses


def default_window(n: np.ndarray) -> tuple[float, float]:
    """n >= 2 up to the last context length.

    n = 1 is left out: with a single token of context the loss is the bigram
    loss, set by the unigram/bigram table rather than by the long-context decay the
    exponent describes (and a trained model's first position sees no attention
    history). Every longer context is kept so the fit has T - 2 points.
    """
    first = FIRST_FITTED_CONTEXT if np.sum(n >= FIRST_FITTED_CONTEXT) >= 2 else float(n.min())
    return float(first), float(n.max())


def log_binned(n: np.ndarray, losses: np.ndarray, window: tuple[float, float], bins: int):
    """Mean loss in ``bins`` geometric bins of n over ``window`` (x = geometric mean of n).

    Why: per_position_loss gives T - 1 points, most of them at large n (half of them in
    the last octave), each as noisy as the few windows averaged there. An unbinned
    log-log fit is dominated by that noisy tail; equal-width bins in log n weigh every
    octave of context alike and average the noise down, without changing the law fitted.
    """
    keep = (n >= window[0]) & (n <= window[1])
    n, losses = n[keep], losses[keep]
    edges = np.unique(np.round(np.geomspace(n.min(), n.max() + 1, bins + 1)))
    x, y = [], []
    for low, high in zip(edges[:-1], edges[1:]):
        sel = (n >= low) & (n < high)
        if sel.any():
            x.append(float(np.exp(np.log(n[sel]).mean())))
            y.append(float(losses[sel].mean()))
    return np.array(x), np.array(y)


def _fit_curve(n: np.ndarray, losses: np.ndarray, window: tuple[float, float], bins: int):
    """(n, losses) as fitted (log-binned when ``bins``), the offset-free fit, the offset fit or None."""
    if bins:
        n, losses = log_binned(n, losses, window, bins)
    free = fit_power_law(n, losses, window=window)
    try:
        floored: PowerLawFit | None = fit_power_law(n, losses, offset=True, window=window)
    except ExpspecError:
        floored = None
    return n, losses, free, floored


def _window_bootstrap(per_window: np.ndarray, n: np.ndarray, window, bins: int, n_resamples: int,
                      seed: int) -> tuple[list, list]:
    """gamma (offset-free, offset) of ``n_resamples`` curves from windows drawn with replacement."""
    rng = np.random.default_rng([seed, 4])
    free, floored = [], []
    for _ in track(range(n_resamples), "window bootstrap of gamma"):
        curve = per_window[rng.integers(0, per_window.shape[0], size=per_window.shape[0])].mean(axis=0)
        if np.any(curve[(n >= window[0]) & (n <= window[1])] <= 0):
            continue  # a zero-loss resample has no log (a model that is always right)
        _, _, fit_free, fit_floored = _fit_curve(n, curve, window, bins)
        free.append(fit_free.exponent)
        if fit_floored is not None:
            floored.append(fit_floored.exponent)
    return free, floored


def entropy_decay(losses_by_n, form: str = "offset_free", window: tuple[float, float] | None = None,
                  bootstrap: int = 0, seed: int = 0, bins: int = 0) -> EntropyDecay:
    """Fit L_n = A n^-gamma and L_n = A n^-gamma + H_inf; report both, choose ``form``.

    ``losses_by_n`` is per_window_loss's [windows, T-1] array (L_n is the mean over
    windows), per_position_loss's 1-D array (index 0 is n = 1) or a mapping {n: L_n}.
    ``bins`` > 0 fits the log-binned curve (see ``log_binned``) instead of every n.
    ``bootstrap`` resamples the windows (only a per-window array has them): each resample
    recomputes L_n, re-bins and refits both forms; the 95% percentile intervals of gamma
    are the sampling error of the estimate from this many windows.
    """
    if form not in GAMMA_FORMS:
        raise ExpspecError(f"entropy_decay: form must be one of {', '.join(GAMMA_FORMS)}, got {form!r}")
    if bootstrap < 0:
        raise ExpspecError(f"entropy_decay: bootstrap must be >= 0, got {bootstrap}")
    per_window = None
    if not isinstance(losses_by_n, Mapping) and np.ndim(losses_by_n) == 2:
        per_window = np.asarray(losses_by_n, dtype=float)
        if per_window.shape[0] < 1 or per_window.shape[1] < 1:
            raise ExpspecError(f"entropy_decay: per-window losses must be [windows, T-1], got {per_window.shape}")
        losses_by_n = per_window.mean(axis=0)
    if bootstrap and per_window is None:
        raise ExpspecError("entropy_decay: the bootstrap resamples evaluation windows; pass per_window_loss's "
                           "[windows, T-1] array (resampling the fitted points measures misfit, not sampling error)")
    n_all, losses_all = _as_curve(losses_by_n)
    if n_all.size == 0:
        raise ExpspecError("entropy_decay: no losses given")
    window = tuple(window) if window is not None else default_window(n_all)
    n, losses, free, floored = _fit_curve(n_all, losses_all, window, bins)
    if form == "offset" and floored is None:
        fit_power_law(n, losses, offset=True, window=window)  # raises the fitter's own error
    nan = float("nan")
    result = EntropyDecay(
        form=form, gamma=nan, ci=None,
        gamma_offset_free=free.exponent, prefactor_offset_free=free.prefactor,
        r2_offset_free=free.r2, ci_offset_free=None,
        gamma_offset=floored.exponent if floored else nan,
        prefactor_offset=floored.prefactor if floored else nan,
        h_inf=floored.offset if floored else nan,
        r2_offset=floored.r2 if floored else nan,
        ci_offset=None,
        window=(float(window[0]), float(window[1])), n_points=free.n_points, bins=bins,
        fit_n=[float(v) for v in n[(n >= window[0]) & (n <= window[1])]],
        fit_loss=[float(v) for v in losses[(n >= window[0]) & (n <= window[1])]],
        n_windows=0 if per_window is None else int(per_window.shape[0]),
    )
    result.gamma = result.gamma_offset if form == "offset" else result.gamma_offset_free
    if bootstrap:
        samples_free, samples_offset = _window_bootstrap(per_window, n_all, window, bins, bootstrap, seed)
        result.ci_offset_free = percentile_interval(samples_free)
        result.ci_offset = percentile_interval(samples_offset)
        result.n_bootstrap, result.n_bootstrap_fitted = int(bootstrap), len(samples_offset)
        result.ci_method = "window bootstrap"
        result.samples = [float(v) for v in (samples_offset if form == "offset" else samples_free)]
    result.ci = result.ci_offset if form == "offset" else result.ci_offset_free
    return result
