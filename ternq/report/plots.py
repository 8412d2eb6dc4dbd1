"""PNG plots (matplotlib, an optional extra: ``pip install 'ternq[plot]'``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model import Model
from ..tasks import Task
from ..train import predict


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only); ImportError in one line where it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'ternq[plot]'") from None
    return plt


def _save(fig, path: Path) -> Path:
    import io

    from ..model import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _seed_of(models: dict[str, Model]) -> str:
    """'seed N' from the models' own records (they all come from one seed), or '' when they do not say."""
    seeds = {m.meta.get("seed") for m in models.values()} - {None}
    return f"seed {seeds.pop()}" if len(seeds) == 1 else ""


def predictions(models: dict[str, Model], task: Task, path: str | Path, sequence: int = 0) -> Path:
    """Target against each model's prediction on one held-out sequence (left) and each model's error,
    prediction minus target (right), one row per output channel; the legend sits below, off the curves.

    On an easy task the traces lie on top of each other: the error panel is where they differ.
    """
    plt = pyplot()
    X, Y = task.eval_set()
    X, Y = X[sequence : sequence + 1], Y[sequence : sequence + 1]
    n_out = Y.shape[2]
    fig, axes = plt.subplots(n_out, 2, figsize=(13, 3.0 * n_out), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    preds = {label: predict(model, X)[0][0] for label, model in models.items()}
    for c in range(n_out):
        ax, ax_err = axes[c, 0], axes[c, 1]
        ax.plot(Y[0, :, c], color="black", lw=2.5, label="target" if c == 0 else None)
        ax_err.axhline(0.0, color="black", lw=1.0)
        for i, (label, ys) in enumerate(preds.items()):
            colour = colours[i % len(colours)]
            mse = float(np.mean((ys[:, c] - Y[0, :, c]) ** 2))
            ax.plot(ys[:, c], lw=1, color=colour, label=f"{label} (MSE {mse:.1e})" if c == 0 else None)
            ax_err.plot(ys[:, c] - Y[0, :, c], lw=1, color=colour)
        ax.set_ylabel(f"channel {c}" if n_out > 1 else "y")
        ax_err.set_ylabel("prediction - target")
    axes[-1, 0].set_xlabel("step")
    axes[-1, 1].set_xlabel("step")
    seed = _seed_of(models)
    axes[0, 0].set_title(f"{task.name}: held-out sequence {sequence}" + (f", {seed}" if seed else ""))
    axes[0, 1].set_title("error of each model")
    fig.tight_layout()
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(models) + 1), fontsize=8,
               frameon=False)
    return _save(fig, Path(path))


def smooth(loss: np.ndarray, window: int) -> np.ndarray:
    """Centred moving geometric mean over ``window`` points (shorter at the ends): the trend of a noisy loss."""
    log = np.log(np.asarray(loss, float))
    kernel = np.ones(max(1, int(window)))
    total = np.convolve(log, kernel, mode="same")
    count = np.convolve(np.ones_like(log), kernel, mode="same")
    return np.exp(total / count)


def curves(histories: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, seed: int | None = None) -> Path:
    """Training loss against epoch for each run (log scale): the raw loss faint, a moving average over it.
    Values are (epochs, losses)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, (epochs, loss)) in enumerate(histories.items()):
        colour = colours[i % len(colours)]
        loss = np.asarray(loss, float)
        ax.semilogy(epochs, loss, lw=0.8, color=colour, alpha=0.25)
        ok = np.isfinite(loss) & (loss > 0)
        if ok.any():
            ax.semilogy(np.asarray(epochs)[ok], smooth(loss[ok], max(1, ok.sum() // 15)), lw=1.8, color=colour,
                        label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    where = f", seed {seed}" if seed is not None else ""
    ax.set_title(f"Learning curves{where}: moving average over the raw loss (faint); a distilled student's loss "
                 "includes its trajectory term", fontsize=9)
    return _save(fig, Path(path))


def effects(doc: dict, path: str | Path) -> Path:
    """The factorial effects on log10(eval MSE), with their 95% intervals where there are several seeds."""
    plt = pyplot()
    names = list(doc["effects"])
    means = np.array([doc["effects"][n]["mean"] for n in names])
    lo = np.array([doc["effects"][n]["lo"] for n in names], float)
    hi = np.array([doc["effects"][n]["hi"] for n in names], float)
    fig, ax = plt.subplots(figsize=(8, 4))
    has = ~np.isnan(lo)
    err = np.where(has, [means - lo, hi - means], 0.0)
    colors = ["tab:green" if h < 0 else "tab:red" if l > 0 else "tab:gray" for l, h in zip(lo, hi, strict=True)]
    ax.barh(names[::-1], means[::-1], xerr=err[:, ::-1], color=colors[::-1], capsize=4)
    ax.axvline(0, color="black", lw=0.8)
    labels = [f"{n}: {doc['effects'][n]['label']}" for n in names]
    ax.set_yticks(range(len(names)), labels[::-1], fontsize=8)
    ax.set_xlabel("effect on log10(eval MSE)  (negative = lower error)")
    n = len(doc["seeds"])
    ax.set_title(f"Factorial effects, {n} seed{'s' if n > 1 else ''}" + (" (95% CI)" if n > 1 else ""))
    return _save(fig, Path(path))


def half_normal(doc: dict, path: str | Path) -> Path:
    """Half-normal plot of every effect: |estimate| against half-normal quantiles, with 95% intervals.

    Effects that stand off the line through the small ones are the real ones; the
    bars are each effect's interval over seeds (none with one seed).
    """
    from statistics import NormalDist

    plt = pyplot()
    names = sorted(doc["effects"], key=lambda n: abs(doc["effects"][n]["mean"]))
    m = len(names)
    q = [NormalDist().inv_cdf(0.5 + 0.5 * (i + 0.5) / m) for i in range(m)]
    fig, ax = plt.subplots(figsize=(8, 5))
    for qi, n in zip(q, names, strict=True):
        d = doc["effects"][n]
        mean, lo, hi = d["mean"], d["lo"], d["hi"]
        colour = "tab:green" if d["verdict"] == "helps" else "tab:red" if d["verdict"] == "hurts" else "tab:gray"
        if lo is not None and not np.isnan(lo):  # the interval of |effect|
            a, b = sorted((abs(lo), abs(hi)))
            low = 0.0 if lo < 0 < hi else a
            ax.plot([low, b], [qi, qi], color=colour, lw=1.5)
        ax.plot(abs(mean), qi, "o", color=colour)
        ax.annotate(f"{n} ({d['label']})", (abs(mean), qi), textcoords="offset points", xytext=(6, 3), fontsize=7)
    ax.set_xlabel(f"|effect| on {doc.get('response', 'log10(eval MSE)')}   (green helps, red hurts, grey unclear)")
    ax.set_ylabel("half-normal quantile")
    n = len(doc["seeds"])
    ax.set_title(f"Half-normal plot of the effects, {n} seed{'s' if n > 1 else ''}" + (" (95% CI)" if n > 1 else ""))
    return _save(fig, Path(path))


def horizon(models: list[dict], baselines: dict, path: str | Path, title: str) -> Path:
    """Rollout MSE against the horizon (log scale) for each model and the naive baselines.

    ``models`` are the results document's ``forecast.models`` rows (``name``, ``rollout_mse``);
    ``baselines`` its ``forecast.baselines.horizon`` (curves of the baselines, the threshold).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for m in models:
        k = np.arange(1, len(m["rollout_mse"]) + 1)
        ax.semilogy(k, m["rollout_mse"], lw=1.8 if m["kind"] == "teacher" else 1,
                    ls="-" if m["kind"] != "cs" else "-.", label=m["name"])
    styles = {"persistence": ("black", "--"), "seasonal": ("dimgray", ":")}
    for name, curve in baselines["mse"].items():
        colour, ls = styles.get(name, ("gray", "--"))
        label = f"seasonal naive (m={baselines['period']})" if name == "seasonal" else name
        ax.semilogy(np.arange(1, len(curve) + 1), curve, color=colour, ls=ls, lw=2, label=label)
    bar = baselines["threshold"] ** 2
    ax.axhline(bar, color="tab:red", lw=0.8, alpha=0.6)
    ax.annotate(f"RMSE {baselines['threshold']:g}", (1, bar), textcoords="offset points", xytext=(2, 3), fontsize=7,
                color="tab:red")
    ax.set_xlabel(f"horizon (steps after a warm-up of {baselines['warmup']} true steps)")
    ax.set_ylabel("MSE over held-out windows")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title)
    return _save(fig, Path(path))


def trace(models: dict[str, object], task: Task, horizon_: int, warmup: int, path: str | Path, window: int = 0,
          seed: int | None = None) -> Path:
    """Free-running trace of each model against the target on one held-out window, a panel per channel.

    Steps before the dashed line read the true series (warm-up); after it each model reads its own
    predictions (:func:`ternq.forecast.trace`).
    """
    from ..forecast import trace as free_trace

    plt = pyplot()
    traces = {name: free_trace(m, task, horizon_, warmup, window) for name, m in models.items()}
    first = next(iter(traces.values()))
    n_out = first["target"].shape[1]
    fig, axes = plt.subplots(n_out, 1, figsize=(10, 2.8 * n_out), squeeze=False)
    for c in range(n_out):
        ax = axes[c, 0]
        ax.plot(first["step"], first["target"][:, c], color="black", lw=2.5, label="target")
        for name, tr in traces.items():
            ax.plot(tr["step"], tr["prediction"][:, c], lw=1, label=name)
        ax.axvline(warmup - 0.5, color="gray", ls="--", lw=1)
        ax.set_ylabel(f"channel {c}" if n_out > 1 else "y")
    axes[-1, 0].set_xlabel(f"step (free-running after step {warmup - 1}, dashed)")
    axes[0, 0].legend(fontsize=7, ncol=3, loc="upper left")
    who = f"seed {seed}, " if seed is not None else ""
    axes[0, 0].set_title(f"{task.name}: free-running forecasts on held-out window {window} ({who}warm-up {warmup}, "
                         f"horizon {horizon_})")
    return _save(fig, Path(path))
