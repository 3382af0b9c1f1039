"""The sweep's analysis for Q2 and Q3, from its local state (no network): its runs as rows, the three plots, parameter
importance, and Q3's observations, each with the statistic and the runs behind it.
"""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.errors import UserError  # noqa: E402
from common.viz import save  # noqa: E402
from handin.sweep_effects import LEARNED, WORDS, describe, level, rule, sweep_effects  # noqa: E402
from partA.sweep_engine import format_params  # noqa: E402
from partA.sweep_wandb import sweep_runs  # noqa: E402


def collect_sweep(sweep_folder):
    """Rows of the sweep's runs: params, best val acc, created time, state, epochs run."""
    folder = Path(sweep_folder)
    if not (folder / "config.yaml").is_file():
        raise UserError(f"no sweep at {folder}: run make sweep (or make assignment)")
    rows = []
    for run in sweep_runs(folder):
        acc = run["summary"].get("best_val_acc")
        if acc is None and run["history"]:
            acc = max(h.get("val_acc", float("nan")) for h in run["history"])
        rows.append({"id": run["id"], "name": run.get("record") or run["id"], "params": run["params"], "val_acc": acc, "created": run["created"],
                     "state": run["state"], "epochs": len(run["history"]), "error": run["error"],
                     "history": run["history"]})
    if not any(r["val_acc"] is not None for r in rows):
        raise UserError(f"sweep {folder.name} has no run with a validation accuracy yet")
    return rows


def swept_parameters(rows):
    """Parameters that took more than one value across the runs (fixed ones are not 'swept')."""
    names = sorted({k for r in rows for k in r["params"]})
    return [n for n in names if len({repr(r["params"].get(n)) for r in rows}) > 1]


def _is_numeric(values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _scored(rows):
    return [r for r in rows if r["val_acc"] is not None and not math.isnan(r["val_acc"])]


# ---------------------------------------------------------------------------------- plots

def plot_accuracy_vs_created(rows, path):
    scored = sorted(_scored(rows), key=lambda r: r["created"])
    start = scored[0]["created"]
    minutes = [(r["created"] - start) / 60 for r in scored]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    colours = {"finished": "#2166ac", "stopped": "#f4a582", "failed": "#b2182b", "running": "#999999"}
    for state in colours:
        xs = [m for m, r in zip(minutes, scored) if r["state"] == state]
        ys = [r["val_acc"] for r in scored if r["state"] == state]
        if xs:
            ax.scatter(xs, ys, c=colours[state], label=f"{state} ({len(xs)})", s=40, edgecolor="black", linewidth=0.4)
    best = np.maximum.accumulate([r["val_acc"] for r in scored])
    ax.step(minutes, best, where="post", color="black", alpha=0.6, label="best so far")
    ax.set(xlabel="minutes since the sweep's first run", ylabel="best validation accuracy",
           title="validation accuracy vs created")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_sweep_savings(rows, config, path):
    """What early stopping saved: epochs spent, run by run, against every run at full length. (path, {spent, full})"""
    fixed_epochs = (config.get("parameters", {}).get("epochs") or {}).get("value")
    ordered = sorted(rows, key=lambda r: r["created"])
    spent = np.cumsum([r["epochs"] for r in ordered])
    full = np.cumsum([r["params"].get("epochs", fixed_epochs) or r["epochs"] for r in ordered])
    runs = np.arange(1, len(ordered) + 1)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.plot(runs, full, "--", color="#999999", label=f"every run to the end: {full[-1]} epochs")
    ax.plot(runs, spent, "-o", color="#2166ac", markersize=4,
            label=f"spent (hyperband stops): {spent[-1]} epochs = {spent[-1] / max(full[-1], 1):.0%}")
    ax.set(xlabel="runs, in the order they started", ylabel="epochs trained, cumulative",
           title="what early stopping saved in this sweep")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path), {"spent": int(spent[-1]), "full": int(full[-1])}


LOG_SCALE_PARAMETERS = {"lr", "weight_decay"}  # searched on a log scale: drawn on one


def _axis_positions(values, log=False):
    """(positions in [0, 1], tick positions, tick labels) of a parameter's values; ticks sit only at values tried."""
    if _is_numeric(values):
        arr = np.array(values, dtype=float)
        use_log = arr.min() > 0 and (log or arr.max() / arr.min() >= 10)
        scaled = np.log10(arr) if use_log else arr
        low, high = scaled.min(), scaled.max()
        span = high - low
        pos = (scaled - low) / span if span > 0 else np.full_like(scaled, 0.5)
        tried = sorted(set(arr.tolist()))
        shown = tried if len(tried) <= 5 else [tried[0], tried[len(tried) // 2], tried[-1]]
        ticks = [((np.log10(v) if use_log else v) - low) / span if span > 0 else 0.5 for v in shown]
        return pos, ticks, [f"{v:.3g}" for v in shown]
    categories = sorted({repr(v) for v in values})
    index = {c: i for i, c in enumerate(categories)}
    span = max(1, len(categories) - 1)
    if len(categories) == 1:
        return np.full(len(values), 0.5), [0.5], [categories[0].strip("'")]
    return (np.array([index[repr(v)] / span for v in values]),
            [i / span for i in range(len(categories))], [c.strip("'") for c in categories])


def plot_parallel_coordinates(rows, path, searched=None):
    """One axis per searched hyperparameter (also one that every run drew the same value of) → val acc."""
    scored = _scored(rows)
    params = sorted(set(swept_parameters(scored)) | set(searched or []))
    if not params:
        raise UserError("no parameter varied across the runs: nothing to draw in parallel coordinates")
    columns = params + ["val_acc"]
    positions = []
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(columns)), 4.8))
    for c, name in enumerate(columns):
        values = [r["val_acc"] if name == "val_acc" else r["params"].get(name) for r in scored]
        pos, ticks, labels = _axis_positions(values, log=name in LOG_SCALE_PARAMETERS)
        positions.append(pos)
        ax.axvline(c, color="black", lw=0.8, zorder=1)
        for t, label in zip(ticks, labels):  # beside the axis, on a white box, above the lines
            ax.text(c - 0.05, t, label, fontsize=7, va="center", ha="right", zorder=4,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    accs = np.array([r["val_acc"] for r in scored])
    norm = plt.Normalize(accs.min(), accs.max() if accs.max() > accs.min() else accs.min() + 1e-6)
    cmap = plt.get_cmap("viridis")
    for i in np.argsort(accs):  # best runs drawn last, on top
        ax.plot(range(len(columns)), [p[i] for p in positions], color=cmap(norm(accs[i])), alpha=0.85, lw=1.6,
                zorder=2)
    ax.set_xticks(range(len(columns)), [f"{c} (log)" if c in LOG_SCALE_PARAMETERS else c for c in columns],
                  rotation=20)
    ax.set_yticks([])
    ax.set_xlim(-0.8, len(columns) - 0.6)
    ax.set_ylim(-0.06, 1.06)
    ax.set_title("parallel coordinates: every searched hyperparameter → validation accuracy")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="val acc")
    return save(fig, path)


def feature_matrix(rows, params):
    """Numeric params as they are, categorical ones one-hot (as wandb's importance panel does)."""
    names, columns = [], []
    for p in params:
        values = [r["params"].get(p) for r in rows]
        if _is_numeric(values):
            names.append(p)
            columns.append(np.array(values, dtype=float))
        else:
            categories = sorted({repr(x) for x in values})
            # a two-valued parameter is one 0/1 column: two one-hot columns would mirror each other
            for v in categories[1:] if len(categories) == 2 else categories:
                names.append(f"{p}={v.strip(chr(39))}")
                columns.append(np.array([repr(x) == v for x in values], dtype=float))
    return names, np.stack(columns, 1)


MIN_SCORED_RUNS = 3  # a random forest over fewer runs has nothing to split on; the assignment's plan refuses fewer


def parameter_importance(rows):
    """[(feature, random-forest importance, Pearson correlation with val acc)], most important first."""
    from sklearn.ensemble import RandomForestRegressor

    scored = _scored(rows)
    params = swept_parameters(scored)
    if len(scored) < MIN_SCORED_RUNS or not params:
        raise UserError(f"parameter importance needs at least {MIN_SCORED_RUNS} scored runs with a varying parameter "
                        f"(this sweep has {len(scored)})")
    names, X = feature_matrix(scored, params)
    y = np.array([r["val_acc"] for r in scored])
    forest = RandomForestRegressor(n_estimators=300, random_state=0).fit(X, y)
    table = []
    for name, importance, column in zip(names, forest.feature_importances_, X.T):
        corr = float(np.corrcoef(column, y)[0, 1]) if column.std() > 0 and y.std() > 0 else 0.0
        table.append((name, float(importance), corr))
    return sorted(table, key=lambda t: -t[1])


def plot_importance(table, path):
    top = table[:15][::-1]
    fig, (ax_imp, ax_corr) = plt.subplots(1, 2, figsize=(10, 0.42 * len(top) + 1.5), sharey=True)
    names = [t[0] for t in top]
    ax_imp.barh(names, [t[1] for t in top], color="#4393c3")
    ax_imp.set(title="importance (random forest)", xlabel="share of variance explained")
    ax_corr.barh(names, [t[2] for t in top], color=["#1a9850" if t[2] >= 0 else "#d73027" for t in top])
    ax_corr.axvline(0, color="black", lw=0.8)
    ax_corr.set(title="correlation with val acc", xlabel="Pearson r", xlim=(-1, 1))
    for ax in (ax_imp, ax_corr):
        ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


# ---------------------------------------------------------------------------- observations

def confounded_pairs(rows, params, threshold=0.8):
    """Pairs of parameters whose values went together in these runs (Cramér's V ≥ threshold; 1 = the same
    split of the runs): their effects cannot be told apart, so they are reported once, together."""
    from scipy.stats.contingency import association

    pairs = []
    for i, a in enumerate(params):
        for b in params[i + 1:]:
            va, vb = [repr(r["params"].get(a)) for r in rows], [repr(r["params"].get(b)) for r in rows]
            cats_a, cats_b = sorted(set(va)), sorted(set(vb))
            if len(cats_a) < 2 or len(cats_b) < 2 or len(rows) < 4:
                continue
            table_ = np.array([[sum(1 for x, y in zip(va, vb) if x == ca and y == cb) for cb in cats_b] for ca in cats_a])
            v = float(association(table_, method="cramer"))
            if v >= threshold:
                pairs.append((a, b, v))
    return pairs


def observations(rows, searched=None, config=None, importance=(), chance=None):
    """Sentences derived from the runs, each with the statistic and sample size behind it (docs/design.md, "Q3")."""
    config = config or {}
    scored = _scored(rows)
    out = []
    varied = set(swept_parameters(scored)) | set(searched or [])
    best = max(scored, key=lambda r: r["val_acc"])
    out.append(f"Best run: {best.get('name', best['id'])}, {best['val_acc']:.3f} validation accuracy (of {len(scored)} runs), "
               f"with "
               f"{format_params({k: v for k, v in best['params'].items() if k in varied})}.")
    params = swept_parameters(scored)
    for p in sorted(set(searched or []) - set(params)):
        drawn = {repr(r["params"].get(p)).strip("'") for r in scored}
        out.append(f"{p} was searched, but every scored run drew the same value ({', '.join(sorted(drawn))}): "
                   f"no conclusion about it.")
    follows = {}
    for a, b, v in confounded_pairs(scored, [p for p in params if not _is_numeric([r["params"].get(p) for r in scored])
                                             or len({r["params"].get(p) for r in scored}) <= 3]):
        follows.setdefault(b, a)
        out.append(f"{a} and {b} changed together in these runs (Cramér's V = {v:.2f}, n = {len(scored)}): "
                   f"what follows for {a} may be {b}'s effect, and the other way round.")
    metric = (config.get("metric") or {}).get("name", "val_acc")
    findings = sweep_effects(rows, config, [p for p in params if p not in follows], metric, chance)
    if not findings and chance is not None:
        out.append(f"No parameter is compared: the median run never reached {LEARNED}× chance "
                   f"({LEARNED * chance:.2f}) at a checkpoint, so the runs had not learned enough to tell.")
    out += ([rule(findings, chance)] if findings else []) + [describe(f) for f in findings]
    out += reconcile(findings, importance, scored)
    stopped = [r for r in rows if r["state"] == "stopped"]
    if stopped:
        low, high = min(r["epochs"] for r in stopped), max(r["epochs"] for r in stopped)
        span = f"{low}" if low == high else f"{low}–{high}"
        out.append(f"Hyperband stopped {len(stopped)} of {len(rows)} runs early, after {span} epochs; they count in "
                   f"the comparisons above up to the epoch they reached.")
    failed = [r for r in rows if r["state"] == "failed"]
    if failed:
        out.append(f"{len(failed)} run(s) failed; their errors are in the sweep folder.")
    return out


def reconcile(findings, importance, rows, top=3, notable=0.1):
    """Where Q2's importance plot ranks a parameter high and Q3 finds no clear effect of it: what that parameter's
    runs show — their best accuracies and how long they ran — beside the comparison at equal epochs."""
    unclear = {f["parameter"]: f for f in findings if not f["clear"]}
    out = []
    for rank, (feature, weight, correlation) in enumerate(list(importance)[:top], 1):
        parameter, _, value = feature.partition("=")
        finding = unclear.pop(parameter, None)  # one sentence a parameter, for its highest-ranked column
        if weight < notable or finding is None:
            continue
        if value:  # a category (wandb's one-hot column): its runs against the rest
            value = value.lower()
            side = lambda r: level(r["params"].get(parameter)) == value  # noqa: E731
        else:  # a number: the runs above its median against the others
            cut = float(np.median([r["params"][parameter] for r in rows]))
            value, side = f"more than {cut:g}", lambda r: r["params"][parameter] > cut  # noqa: E731
        with_it, without = [r for r in rows if side(r)], [r for r in rows if not side(r)]
        if not with_it or not without:
            continue
        mean = lambda runs, key: sum(r[key] for r in runs) / len(runs)  # noqa: E731
        out.append(f"{WORDS.get(parameter, parameter).capitalize()} ranks {rank} in Q2's importance ({weight:.2f}, "
                   f"r = {correlation:+.2f}): its {len(with_it)} runs with {value} reached {mean(with_it, 'val_acc'):.3f} "
                   f"at best after {mean(with_it, 'epochs'):.1f} epochs on average; the other {len(without)} runs reached "
                   f"{mean(without, 'val_acc'):.3f} after {mean(without, 'epochs'):.1f}. Best accuracies mix in how "
                   f"long hyperband let a run go on; compared at equal epochs, the gap is within the "
                   f"± {finding['threshold'] * finding['se']:.3f} a clear effect needs.")
    return out
