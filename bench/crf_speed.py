"""How fast is our CRF against pytorch-crf 0.7.2, on identical inputs and parameters?

Times the training loss (negative log-likelihood; forward alone and forward + backward) and Viterbi
decoding of `bilstm_nlp.nn.crf.CRF` and `torchcrf.CRF(num_tags, batch_first=True)` with the same
parameters copied in and no constraints, after checking that both give the same NLL and the same
paths. Ours and the peer alternate within each repeat; the table gives median tokens/s, the
interquartile range, and the ratio ours/peer. Figures go to `bench/results/crf_speed.json`.

    python bench/crf_speed.py                # full run
    python bench/crf_speed.py --quick        # smoke run
    python bench/crf_speed.py --threads 1    # steadier figures on a busy machine
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchcrf import CRF as PeerCRF

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bilstm_nlp.nn.crf import CRF  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, git_commit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "crf_speed.json"


def make_inputs(
    batch: int, num_tags: int, min_len: int, max_len: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Emissions `(batch, max_len, num_tags)`, gold tag ids and a left-aligned bool mask."""
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, max_len, num_tags, generator=generator) * 2
    tag_ids = torch.randint(num_tags, (batch, max_len), generator=generator)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=generator)
    lengths[0] = max_len
    mask = torch.arange(max_len) < lengths.unsqueeze(1)
    return emissions, tag_ids, mask


def check_equal(ours: CRF, peer: PeerCRF, emissions, tag_ids, mask) -> dict:
    """Assert both CRFs agree; return the largest differences found."""
    with torch.no_grad():
        our_llh = ours.log_likelihood(emissions, tag_ids, mask)
        peer_llh = peer(emissions, tag_ids, mask, reduction="none")
        torch.testing.assert_close(our_llh, peer_llh, atol=1e-3, rtol=1e-5)
        torch.testing.assert_close(
            ours(emissions, tag_ids, mask), -peer(emissions, tag_ids, mask), atol=1e-2, rtol=1e-5
        )
        our_ids, our_scores = ours.viterbi_decode(emissions, mask)
        peer_paths = peer.decode(emissions, mask)
    lengths = mask.sum(1).tolist()
    differing = [
        b for b, path in enumerate(peer_paths) if our_ids[b, : lengths[b]].tolist() != path
    ]
    # A differing path is acceptable only as a tie (float rounding may pick either path).
    for b in differing:
        one = slice(b, b + 1)
        peer_ids = torch.zeros_like(our_ids[one])
        peer_ids[0, : lengths[b]] = torch.tensor(peer_paths[b])
        with torch.no_grad():
            peer_path_llh = ours.log_likelihood(emissions[one], peer_ids, mask[one])
            our_path_llh = ours.log_likelihood(emissions[one], our_ids[one], mask[one])
        torch.testing.assert_close(our_path_llh, peer_path_llh, atol=1e-5, rtol=0)
    return {
        "max_abs_log_likelihood_diff": float((our_llh - peer_llh).abs().max()),
        "viterbi_paths_equal": len(peer_paths) - len(differing),
        "viterbi_paths_tied": len(differing),
        "sequences": len(peer_paths),
    }


def time_pair(
    ours: Callable[[], object], peer: Callable[[], object], warmup: int, repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds per call for each, alternating which goes first to cancel drift."""
    for _ in range(warmup):
        ours()
        peer()
    our_times, peer_times = [], []
    for repeat in range(repeats):
        order = [(ours, our_times), (peer, peer_times)]
        for fn, times in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return our_times, peer_times


def summarise(times: list[float], tokens: int) -> dict:
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "median_ms": statistics.median(times) * 1e3,
        "q1_ms": quartiles[0] * 1e3,
        "q3_ms": quartiles[2] * 1e3,
        "tokens_per_s": tokens / statistics.median(times),
        "repeats": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, for a smoke run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--num-tags", type=int, default=9)
    parser.add_argument("--min-len", type=int, default=14)
    parser.add_argument("--max-len", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=None, help="default 40, or 5 with --quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 40)
    warmup = 2 if args.quick else 5

    torch.manual_seed(args.seed)
    peer = PeerCRF(args.num_tags, batch_first=True)
    ours = CRF(args.num_tags)
    with torch.no_grad():
        for name in ("start_transitions", "transitions", "end_transitions"):
            getattr(ours, name).copy_(getattr(peer, name))
    emissions, tag_ids, mask = make_inputs(
        args.batch, args.num_tags, args.min_len, args.max_len, args.seed
    )
    tokens = int(mask.sum())
    agreement = check_equal(ours, peer, emissions, tag_ids, mask)

    trainable = emissions.clone().requires_grad_(True)
    lengths = mask.sum(1).tolist()

    def our_forward():
        return ours(trainable, tag_ids, mask)

    def peer_forward():
        return -peer(trainable, tag_ids, mask)

    def our_train_step():
        ours(trainable, tag_ids, mask).backward()

    def peer_train_step():
        (-peer(trainable, tag_ids, mask)).backward()

    def our_viterbi_lists():
        # Like for like: pytorch-crf returns a list of tag-id lists.
        with torch.inference_mode():
            tag_lists = ours.viterbi_decode(emissions, mask)[0].tolist()
        return [path[:length] for path, length in zip(tag_lists, lengths, strict=True)]

    def our_viterbi_tensor():
        with torch.inference_mode():
            return ours.viterbi_decode(emissions, mask)

    def peer_viterbi():
        with torch.inference_mode():
            return peer.decode(emissions, mask)

    cases = [
        ("NLL forward", our_forward, peer_forward),
        ("NLL forward + backward", our_train_step, peer_train_step),
        ("Viterbi (list output)", our_viterbi_lists, peer_viterbi),
        ("Viterbi (tensor output)", our_viterbi_tensor, peer_viterbi),
    ]
    rows = []
    for name, ours_fn, peer_fn in cases:
        our_times, peer_times = time_pair(ours_fn, peer_fn, warmup, repeats)
        ours_summary, peer_summary = summarise(our_times, tokens), summarise(peer_times, tokens)
        rows.append(
            {
                "case": name,
                "ours": ours_summary,
                "peer": peer_summary,
                "ratio": ours_summary["tokens_per_s"] / peer_summary["tokens_per_s"],
            }
        )

    print(
        f"CRF speed: batch {args.batch}, {args.num_tags} tags, "
        f"lengths {args.min_len}-{args.max_len} ({tokens} tokens), {repeats} repeats, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}\n"
    )
    print(
        "| case | ours tokens/s | ours ms median (IQR) "
        "| pytorch-crf tokens/s | pytorch-crf ms median (IQR) | ours/peer |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        cells = [row["case"]]
        for side in (row["ours"], row["peer"]):
            cells.append(f"{side['tokens_per_s']:,.0f}")
            cells.append(f"{side['median_ms']:.2f} ({side['q1_ms']:.2f}-{side['q3_ms']:.2f})")
        cells.append(f"{row['ratio']:.2f}x")
        print("| " + " | ".join(cells) + " |")
    print(f"\nagreement: {agreement}")

    report = {
        "command": shlex.join(["python", "bench/crf_speed.py", *sys.argv[1:]]),
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "peer": "pytorch-crf 0.7.2 (torchcrf.CRF, batch_first=True)",
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "config": {
            "batch": args.batch,
            "num_tags": args.num_tags,
            "min_len": args.min_len,
            "max_len": args.max_len,
            "tokens": tokens,
            "repeats": repeats,
            "warmup": warmup,
            "seed": args.seed,
            "quick": args.quick,
        },
        "agreement": agreement,
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
