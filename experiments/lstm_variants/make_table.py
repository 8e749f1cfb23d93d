"""Table and figure of the lstm_variants sweeps, from their run folders.

    python experiments/lstm_variants/make_table.py multirun/lstm_variants \
        --out experiments/lstm_variants/

Reads every ``*/summary.json`` (with its ``config.yaml``) under the given folders and writes
``results.csv`` (one row per variant and task: mean, std and per-seed values), ``table.md``
and ``variants.png``. Variants are named as in Greff et al. (2017): ``cell=peephole`` with
``cell.variant=...`` is V (vanilla), NIG, NFG, NOG, NIAF, NOAF, CIFG, FGR; ``cell=lstm`` with
the vanilla variant is NP (no peepholes). Metrics: temporal order, the held-out accuracy after
the last update and the first evaluation step at which the seed's accuracy reached 0.99
("steps to solve"; "never" if it did not, counted as the run's length in the figure's
mean); sunspots, the test-span RMSE in the
series' units (sunspot numbers) beside the naive forecast's.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

ORDER = ["V", "NP", "NIG", "NFG", "NOG", "NIAF", "NOAF", "CIFG", "FGR"]


def label(cfg: dict) -> str:
    variant = cfg["cell"].get("variant", "vanilla")
    if cfg["cell"]["name"] == "lstm":
        return "NP" if variant == "vanilla" else f"NP+{variant.upper()}"
    return "V" if variant == "vanilla" else variant.upper()


def steps_to_solve(run: Path, seeds: int, threshold: float = 0.99) -> list[int | None]:
    """Per seed, the first evaluation step with accuracy >= threshold (None: never)."""
    first: dict[int, int | None] = {s: None for s in range(seeds)}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("split") == "eval" and rec.get("accuracy", 0) >= threshold:
            seen = first[rec["seed"]]
            first[rec["seed"]] = rec["step"] if seen is None else min(seen, rec["step"])
    return [first[s] for s in range(seeds)]


def collect(folders: list[Path]) -> pd.DataFrame:
    rows = []
    for path in sorted(p for f in folders for p in f.glob("**/summary.json")):
        run = path.parent
        summary = json.loads(path.read_text())
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        row = {"variant": label(cfg), "task": summary["task"], "params": summary["param_count"],
               "status": summary["status"], "run": run.name}
        if summary["task"] == "forecast":
            values = [s["rmse"] for s in summary["forecast"]["per_seed"]]
            row.update(metric="test RMSE", naive=summary["forecast"]["baselines"]["naive"]["rmse"])
        else:
            values = [summary["per_seed"][str(s)]["accuracy"] for s in range(len(
                summary["per_seed"]))]
            solve = steps_to_solve(run, len(values))
            last = summary["steps_run"]  # a seed that never solved counts as the run's length
            row.update(steps_to_solve_mean=float(np.mean([last if s is None else s
                                                          for s in solve])),
                       steps_to_solve=" ".join("never" if s is None else str(s) for s in solve),
                       metric="accuracy")
        row.update(mean=float(np.mean(values)), std=float(np.std(values)),
                   seeds=" ".join(f"{v:.4g}" for v in values))
        rows.append(row)
    df = pd.DataFrame(rows)
    df["order"] = df.variant.map({v: i for i, v in enumerate(ORDER)}).fillna(len(ORDER))
    return df.sort_values(["task", "order"]).drop(columns="order")


def markdown(df: pd.DataFrame) -> str:
    out = []
    recall = df[df.task != "forecast"]
    if len(recall):
        out += ["| variant | params | accuracy (mean ± std) | per seed | steps to 0.99 |",
                "| --- | --- | --- | --- | --- |"]
        out += [f"| {r.variant} | {r.params:,} | {r['mean']:.3f} ± {r['std']:.3f} | "
                f"{r.seeds} | {r.steps_to_solve} |" for _, r in recall.iterrows()]
        out.append("")
    fc = df[df.task == "forecast"]
    if len(fc):
        out += ["| variant | params | test RMSE (mean ± std) | per seed | naive RMSE |",
                "| --- | --- | --- | --- | --- |"]
        out += [f"| {r.variant} | {r.params:,} | {r['mean']:.2f} ± {r['std']:.2f} | "
                f"{r.seeds} | {r.naive:.2f} |" for _, r in fc.iterrows()]
    return "\n".join(out) + "\n"


def figure(df: pd.DataFrame, path: Path) -> None:
    tasks = [t for t in ("temporal_order", "forecast") if t in set(df.task)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = df[df.task == task]
        if task == "forecast":
            ax.bar(sub.variant, sub["mean"], yerr=sub["std"], capsize=3, color="tab:blue")
            ax.axhline(sub.naive.iloc[0], ls="--", color="gray", label="naive")
            ax.set_ylabel("test RMSE (sunspots), lower is better")
            ax.legend()
        else:
            ax.bar(sub.variant, sub.steps_to_solve_mean, color="tab:orange")
            ax.set_ylabel("updates to 0.99 accuracy (mean of seeds)")
        ax.set_title(task if task != "forecast" else "forecast: sunspots")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    df = collect(args.folders)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "results.csv", index=False)
    (args.out / "table.md").write_text(markdown(df))
    figure(df, args.out / "variants.png")
    print(markdown(df))


if __name__ == "__main__":
    main()
