"""`c2s score`: log-likelihoods of texts under a model, and zero-shot classification."""

import argparse
import json
from pathlib import Path

from c2s_jax.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s score` to the subcommands."""
    p = sub.add_parser(
        "score",
        help="per-token log-likelihood of texts, or rank --choices for a --prompt",
        description="Scores each TEXT after --prompt (as the corpus writes answers: after "
        "a space, closed by EOS). With --choices, ranks the candidate answers by "
        "log-likelihood (zero-shot classification). --jsonl FILE reads lines "
        '{"prompt": ..., "text": ...} or {"prompt": ..., "choices": [...]}.',
    )
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="model bundle or training workdir (local, or gs:// copied to $C2S_CACHE_DIR)",
    )
    p.add_argument("--prompt", default="", help="the context every TEXT follows")
    p.add_argument("--choices", nargs="+", default=None, help="candidate answers to rank")
    p.add_argument("--jsonl", default=None, help="many prompts at once (see above)")
    p.add_argument("--mean", action="store_true", help="rank by mean per-token log-prob")
    p.add_argument("--tokens", action="store_true", help="print every token's log-prob")
    p.add_argument(
        "--truncate",
        action="store_true",
        help="cut prompts longer than the model's training sequences at their end "
        "(default: refuse them)",
    )
    p.set_defaults(run=_run)


def _requests(args: argparse.Namespace) -> list[dict]:
    requests = [{"prompt": args.prompt, "text": t} for t in args.texts]
    if args.choices:
        requests.append({"prompt": args.prompt, "choices": list(args.choices)})
    if args.jsonl:
        path = Path(args.jsonl)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise InputError(f"--jsonl {path}: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise InputError(
                f"--jsonl {path}: not UTF-8 text (byte {err.start}); save it as UTF-8"
            ) from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{number}: not JSON ({err.msg})") from None
            if not isinstance(record, dict) or ("text" in record) == ("choices" in record):
                raise InputError(f"{path}:{number}: give exactly one of 'text' or 'choices'")
            requests.append({"prompt": record.get("prompt", ""), **record})
    if not requests:
        raise InputError("nothing to score: give TEXT, --choices or --jsonl FILE")
    return requests


def _run(args: argparse.Namespace) -> None:
    from c2s_jax.checkpoints.bundle import load_bundle
    from c2s_jax.inference.scoring import Scorer, rank_candidates, score_texts

    requests = _requests(args)
    bundle = load_bundle(args.checkpoint)
    scorer = Scorer.from_bundle(bundle)
    tokenizer = bundle.tokenizer
    texts = [r for r in requests if "text" in r]
    limit = bundle.trained_length
    scored = score_texts(
        scorer,
        tokenizer,
        [r["prompt"] for r in texts],
        [r["text"] for r in texts],
        limit,
        args.truncate,
    )
    for request, result in zip(texts, scored, strict=True):
        record = {
            "text": request["text"],
            "logprob": result.total,
            "tokens": len(result.tokens),
            "mean_logprob": result.mean,
        }
        if args.tokens:
            record["per_token"] = [
                [tokenizer.piece(int(t)), float(lp)]
                for t, lp in zip(result.tokens, result.logprobs, strict=True)
            ]
        print(json.dumps(record))
    choices = [r for r in requests if "choices" in r]
    if choices:
        scores, best = rank_candidates(
            scorer,
            tokenizer,
            [r["prompt"] for r in choices],
            [r["choices"] for r in choices],
            length_normalize=args.mean,
            max_length=limit,
            truncate=args.truncate,
        )
        for request, values, winner in zip(choices, scores, best, strict=True):
            ranked = sorted(
                zip(request["choices"], values.tolist(), strict=True), key=lambda x: -x[1]
            )
            print(json.dumps({"best": request["choices"][winner], "ranking": ranked}))
