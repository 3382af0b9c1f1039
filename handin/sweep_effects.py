"""Q3: what each hyperparameter did to validation accuracy, from every run of a sweep — hyperband-stopped ones too.

Each effect is built up checkpoint by checkpoint (the first over every run, least squares over all parameters; then
the effect on each later gain among the runs that got there), from the first checkpoint where the median run is at
twice chance; a parameter is named only beyond a Bonferroni-corrected t threshold over every comparison made, so a
sweep of pure noise names nothing 95 % of the time. Why: docs/design.md, "Q3"; measured: docs/measurements.md.
"""
import math
from itertools import combinations

import numpy as np

ALPHA = 0.05  # family-wise error over all comparisons of one sweep
NO_CLEAR_DIFFERENCE = 0.01  # accuracy points below which a difference is not called an effect
MAX_LEVELS = 4  # a numeric parameter with more distinct values is treated as a scale (a slope), not as groups
LEARNED = 2  # runs are compared from the first checkpoint where the median run is at least this many times chance

# The assignment's words for the parameters it asks about
WORDS = {"organisation": "filter organisation", "base_filters": "number of filters", "filters": "filters per layer",
         "kernel_sizes": "kernel sizes", "batch_norm": "batch normalisation", "dropout": "dropout",
         "augment": "data augmentation", "aug_strength": "augmentation strength", "activation": "activation",
         "dense_units": "dense units", "lr": "learning rate", "weight_decay": "weight decay",
         "batch_size": "batch size", "label_smoothing": "label smoothing", "optimizer": "optimizer"}


def level(value):
    return str(value).lower() if isinstance(value, bool) else (f"{value:g}" if isinstance(value, float) else str(value))


def rung_epochs(config, rows):
    """The epochs at which the sweep's runs were compared: hyperband's rungs below the last epoch, then the last."""
    from partA.sweep_config import first_rung

    last = max((h["epoch"] for r in rows for h in r["history"]), default=0)
    stop = config.get("early_terminate") or {}
    if not stop or not last:
        return [last] if last else []
    eta, rungs, epoch = int(stop.get("eta", 3)), [], first_rung(stop)
    while epoch < last:
        rungs.append(epoch)
        epoch *= eta
    return rungs + [last]


def accuracy_at(row, epoch, metric="val_acc"):
    return next((h[metric] for h in row["history"] if h["epoch"] == epoch and metric in h), None)


def encoding(rows, parameters):
    """{parameter: ("groups", [levels]) or ("scale", log?)} for the parameters that vary across these runs."""
    out = {}
    for p in parameters:
        values = [r["params"].get(p) for r in rows]
        distinct = {level(v) for v in values}
        if len(distinct) < 2:
            continue
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric and len(distinct) > MAX_LEVELS:
            # a range spanning 4x or more (a learning rate) acts by ratios: its effect is given per doubling
            out[p] = ("scale", min(values) > 0 and max(values) / min(values) >= 4)
        else:
            out[p] = ("groups", sorted(distinct))
    return out


def design(rows, coding):
    """Least-squares design: an intercept, then per parameter its levels after the first (0/1) or its scale."""
    columns, names = [np.ones(len(rows))], [("intercept", None)]
    for p, (kind, spec) in coding.items():
        values = [r["params"].get(p) for r in rows]
        if kind == "scale":
            x = np.array(values, float)
            columns.append(np.log2(x) if spec else x)
            names.append((p, None))
        else:
            for lv in spec[1:]:
                columns.append(np.array([level(v) == lv for v in values], float))
                names.append((p, lv))
    return np.stack(columns, 1), names


def adjusted_first_rung(rows, y, coding, min_dof=4):
    """Coefficients and their covariance from least squares over these parameters, or None when too few runs."""
    X, names = design(rows, coding)
    dof = len(rows) - X.shape[1]
    if dof < min_dof or np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    residual = y - X @ beta
    sigma2 = float(residual @ residual) / dof
    return beta, sigma2 * np.linalg.inv(X.T @ X), names, dof


def contrasts(coding, p):
    """The comparisons made for parameter p: level pairs (b better-or-not than a), or its slope."""
    kind, spec = coding[p]
    return [None] if kind == "scale" else list(combinations(spec, 2))


def marginal(rows, y, coding, p, pair):
    """(effect, variance, dof) of a contrast from these runs alone, or None when a side has no run."""
    kind, spec = coding[p]
    values = [r["params"].get(p) for r in rows]
    if kind == "scale":
        x = np.log2(np.array(values, float)) if spec else np.array(values, float)
        if len(rows) < 4 or x.std() == 0:
            return None
        slope, intercept = np.polyfit(x, y, 1)
        residual = y - (slope * x + intercept)
        dof = len(rows) - 2
        return float(slope), float(residual @ residual) / dof / float(((x - x.mean()) ** 2).sum()), dof
    groups = {lv: y[[level(v) == lv for v in values]] for lv in spec}
    a, b = pair
    if len(groups[a]) == 0 or len(groups[b]) == 0:
        return None
    filled = [g for g in groups.values() if len(g)]
    dof = sum(len(g) for g in filled) - len(filled)
    if dof < 1:
        return None
    pooled = sum(float(((g - g.mean()) ** 2).sum()) for g in filled) / dof
    return float(groups[b].mean() - groups[a].mean()), pooled * (1 / len(groups[a]) + 1 / len(groups[b])), dof


def satterthwaite(parts):
    """Degrees of freedom of a sum of independent variance estimates [(variance, dof)] (Welch-Satterthwaite)."""
    denominator = sum(v * v / d for v, d in parts if d > 0)
    return sum(v for v, _ in parts) ** 2 / denominator if denominator > 0 else 1.0


def checkpoints(rungs):
    """The epochs the effects are chained through: the epoch before each rung below the last (why: docs/design.md,
    "Q3"), or the rung itself at epoch 1; then the last epoch."""
    return sorted({e - 1 if e > 1 else e for e in rungs[:-1]} | {rungs[-1]})


def learned_checkpoints(done, epochs, chance, metric="val_acc"):
    """The checkpoints from the first where the median run that reached it is at least LEARNED × chance (all of them
    when chance is unknown); [] when the runs never got there."""
    if chance is None:
        return epochs
    for index, epoch in enumerate(epochs):
        reached = [a for a in (accuracy_at(r, epoch, metric) for r in done) if a is not None]
        if reached and float(np.median(reached)) >= LEARNED * chance:
            return epochs[index:]
    return []


def estimate(rows, y, coding, p, pair, adjust_for=None, min_dof=4):
    """(effect, variance, dof) of a contrast: least squares adjusted for `adjust_for` (None: all) when there are runs
    enough, else these runs' groups (or slope) alone; None when a side has no run."""
    adjusted = coding if adjust_for is None else {k: coding[k] for k in coding if k == p or k in adjust_for}
    fit = adjusted_first_rung(rows, y, adjusted, min_dof)
    if fit is None:
        return marginal(rows, y, coding, p, pair)
    beta, cov, names, dof = fit
    if pair is None:
        i = names.index((p, None))
        return beta[i], cov[i, i], dof
    vector = np.zeros(len(names))  # level b minus level a; the first level is the reference (coefficient 0)
    a, b = pair
    if (p, b) in names:
        vector[names.index((p, b))] += 1
    if (p, a) in names:
        vector[names.index((p, a))] -= 1
    return float(vector @ beta), float(vector @ cov @ vector), dof


def chain(epochs, reaching, targets, coding, p, pair, moving):
    """The contrast's effect built up checkpoint by checkpoint: [(effect, variance, dof, runs)] per step, up to the
    deepest checkpoint both sides reached; a later gain is adjusted only for the `moving` parameters."""
    steps = []
    for index, (runs, y) in enumerate(zip(reaching, targets)):
        step = (estimate(runs, y, coding, p, pair) if index == 0 else
                estimate(runs, y, coding, p, pair, adjust_for=moving, min_dof=2)) if len(runs) else None
        if step is None or step[2] < 2:
            break
        steps.append((*step, len(runs)))
    return steps


def moved(later, threshold_at):
    """Did the effect change after the first checkpoint? Claimed only as a finding is: beyond the corrected threshold."""
    change, variance = sum(s[0] for s in later), sum(s[1] for s in later)
    return bool(later) and abs(change) >= threshold_at(satterthwaite([s[1:3] for s in later])) * math.sqrt(variance)


def moving_parameters(epochs, reaching, targets, coding, threshold_at):
    """Parameters whose effect moves over the epochs (their gains differ, beyond the corrected threshold): later gains
    are adjusted for them, or their movement would be noise in every other parameter's gains."""
    return {p for p in coding for pair in contrasts(coding, p)
            if moved(chain(epochs, reaching, targets, coding, p, pair, moving=set())[1:], threshold_at)}


def sweep_effects(rows, config, parameters, metric="val_acc", chance=None):
    """One finding per parameter that varied: its largest contrast's effect, standard error, runs and whether it is
    clear (`chance`: 1 / the number of classes, to start where the runs have learned)."""
    from scipy import stats

    done = [r for r in rows if r["state"] in ("finished", "stopped") and r.get("history")]
    rungs = rung_epochs(config, done)
    epochs = learned_checkpoints(done, checkpoints(rungs), chance, metric) if rungs else []
    if not epochs:
        return []
    reaching = [[r for r in done if accuracy_at(r, e, metric) is not None] for e in epochs]
    coding = encoding(reaching[0], parameters)
    targets = [np.array([accuracy_at(r, epochs[0], metric) for r in reaching[0]])]
    targets += [np.array([accuracy_at(r, e, metric) - accuracy_at(r, before, metric) for r in runs])
                for before, e, runs in zip(epochs, epochs[1:], reaching[1:])]
    comparisons = sum(len(contrasts(coding, p)) for p in coding)
    threshold_at = lambda dof: float(stats.t.ppf(1 - ALPHA / (2 * max(comparisons, 1)), max(dof, 1)))  # noqa: E731
    moving = moving_parameters(epochs, reaching, targets, coding, threshold_at)
    findings = []
    for p in coding:
        candidates = []
        for pair in contrasts(coding, p):
            steps = chain(epochs, reaching, targets, coding, p, pair, moving)
            if not steps:
                continue
            first, later = steps[0], steps[1:]
            steady = not moved(later, threshold_at)
            # no evidence it changed after the first checkpoint: the precise early estimate stands for the whole run
            used = steps[:1] if steady else steps
            effect = sum(s[0] for s in used)
            se = math.sqrt(max(sum(s[1] for s in used), 1e-12))
            dof = satterthwaite([s[1:3] for s in used])
            threshold = threshold_at(dof)
            candidates.append({"parameter": p, "pair": pair, "log": coding[p] == ("scale", True),
                               "effect": effect, "se": se, "dof": dof,
                               "epoch": epochs[len(steps) - 1], "runs": [s[3] for s in steps],
                               "first_epoch": epochs[0], "first_effect": first[0], "first_se": math.sqrt(first[1]),
                               "threshold": threshold, "steady": steady, "comparisons": comparisons,
                               "clear": abs(effect) / se >= threshold and abs(effect) >= NO_CLEAR_DIFFERENCE})
        if candidates:
            findings.append(max(candidates, key=lambda c: abs(c["effect"]) / c["se"]))
    return findings


def rule(findings, chance=None):
    """The rule that decides "clear", said once, in words, with this sweep's numbers."""
    if not findings:
        return ""
    start = (f"the first checkpoint where the median run had at least {LEARNED}× chance's accuracy "
             f"({LEARNED * chance:.2f})" if chance else "the first checkpoint")
    return (f"How to read these: runs are compared at equal epochs, from epoch {findings[0]['first_epoch']}, {start}; "
            f"each effect is adjusted for the other parameters. An effect is clear when it is larger than its margin: "
            f"its standard error times the two-sided 5 % t threshold split over the {findings[0]['comparisons']} "
            f"comparisons made (Bonferroni; {float(np.median([f['threshold'] for f in findings])):.1f} standard errors for a typical one here), and at least {NO_CLEAR_DIFFERENCE}. The "
            f"± after each number is that margin. The threshold falls with more runs: {findings[0]['runs'][0]} runs "
            f"leave about {float(np.median([f['dof'] for f in findings])):.0f} degrees of freedom once every "
            f"parameter's effect is fitted.")


# Why a parameter's better value is likely better for this CNN and data, keyed by (parameter, the better value);
# "more"/"less" for numeric ones.
REASONS = {
    ("batch_norm", "true"): "batch norm keeps each layer's inputs at a steady scale, so the same learning rate trains "
                            "faster and more stably",
    ("batch_norm", "false"): "with small batches the normalising statistics are noisy, which costs more than it buys",
    ("activation", "relu"): "ReLU's hard zero makes sparse features that suited these images",
    ("activation", "smooth"): "a smooth activation passes small negative values, so fewer units stop learning than "
                              "with ReLU",
    ("organisation", "double"): "doubling keeps the early, full-resolution layers cheap and gives the deep layers, "
                                "where the map is small, the filters to combine parts into shapes",
    ("organisation", "half"): "many early filters capture more low-level detail (edges, textures) at full resolution",
    ("organisation", "same"): "an even width keeps capacity in the early layers without the cost of halving",
    ("base_filters", "more"): "more filters give each layer more features to detect",
    ("base_filters", "less"): "a smaller network fits faster in the epochs the runs had",
    ("dense_units", "more"): "a wider dense layer combines more of the conv features",
    ("dense_units", "less"): "a narrower dense layer has fewer weights to over-fit with",
    ("dropout", "more"): "dropout before the dense layer stops it from relying on a few features, so it over-fits less",
    ("dropout", "less"): "in runs this short, dropout slows fitting more than it prevents over-fitting",
    ("augment", "true"): "random crops, flips and rotations show the shapes at new positions and scales, so the "
                         "model learns the shape rather than the picture",
    ("augment", "false"): "in runs this short, the harder training task costs more than the variety buys",
    ("aug_strength", "more"): "stronger augmentation shows more varied copies, so the model over-fits less",
    ("aug_strength", "less"): "in runs this short, stronger augmentation slows fitting more than it helps",
    ("lr", "more"): "larger steps reach a good solution within the epochs the runs had",
    ("lr", "less"): "large steps overshoot; smaller ones settle better",
    ("weight_decay", "more"): "weight decay keeps the weights small, which regularises",
    ("weight_decay", "less"): "in short runs, weight decay held the fit back",
    ("kernel_sizes", "larger"): "larger early kernels see more of the shape at once",
    ("kernel_sizes", "smaller"): "small kernels stacked see as far with fewer weights",
}


def reason(finding, better, worse):
    """The likely reason the better value won, from REASONS ('' when none applies)."""
    p = finding["parameter"]
    if finding["pair"] is None or p in ("base_filters", "dense_units", "dropout", "aug_strength", "weight_decay"):
        up = finding["effect"] > 0 if finding["pair"] is None else float(better) > float(worse)
        return REASONS.get((p, "more" if up else "less"), "")
    if p == "activation":
        return REASONS[(p, "relu" if better == "relu" else "smooth")] if "relu" in (better, worse) else ""
    if p == "kernel_sizes":
        return REASONS[(p, "larger" if better > worse else "smaller")]
    return REASONS.get((p, better), "")


def describe(finding):
    """One sentence in the assignment's terms: the difference, when, the margin a clear effect needs, the runs behind
    it; for a clear effect, its likely reason and what to use."""
    f = finding
    name = WORDS.get(f["parameter"], f["parameter"])
    margin = f["threshold"] * f["se"]
    if f["pair"] is None:
        better = worse = None
        difference = (f"{'doubling the' if f.get('log', False) else 'one unit more of'} {name} changed validation "
                      f"accuracy by {f['effect']:+.3f}")
    else:
        a, b = f["pair"]
        better, worse = (b, a) if f["effect"] > 0 else (a, b)
        difference = f"{better} beat {worse} by {abs(f['effect']):.3f} validation accuracy"
    later = f["epoch"] != f["first_epoch"]
    when = (f"at epoch {f['first_epoch']}, unchanged through epoch {f['epoch']}" if f["steady"] and later
            else f"at epoch {f['epoch']}")
    runs = f"{f['runs'][0]} runs at epoch {f['first_epoch']}" + (
        f", {f['runs'][-1]} of them at epoch {f['epoch']}" if later else "")
    if not f["clear"]:
        small = abs(f["effect"]) < NO_CLEAR_DIFFERENCE and abs(f["effect"]) >= margin
        return (f"{name.capitalize()}: not clear — {difference} {when} ({runs}), "
                + (f"under the {NO_CLEAR_DIFFERENCE} that counts as a difference." if small else
                   f"within the ± {margin:.3f} a clear effect needs."))
    early = ""
    if not f["steady"] and f["first_effect"] * f["effect"] < 0 and abs(f["first_effect"]) > 2 * f["first_se"]:
        early = (f" It reverses: at epoch {f['first_epoch']} the difference was {f['first_effect']:+.3f} the other "
                 f"way, so comparing runs at that epoch alone would have judged it wrongly.")
    why = reason(f, better, worse)
    use = (f" Use {better}." if better is not None else
           f" Prefer the {'high' if f['effect'] > 0 else 'low'} end of the range searched.")
    return (f"{name.capitalize()}: {difference} {when} (± {margin:.3f}; {runs}).{early}"
            + (f" Likely why: {why}." if why else "") + use)
