#!/usr/bin/env python
"""Stream a config the way multi-GPU training does, and report what every rank read and how fast.

    torchrun --nproc_per_node=2 scripts/stream_ddp.py --repo NorthHead/arr-coc-vqa-training --config small \
        [--split train] [--num-workers 2] [--batch-size 8] [--epochs 1] [--shuffle-buffer N --seed S] \
        [--no-decode] [--max-rows N] [--ids-out DIR] [--check]
        [--mixture vqav2=0.5,gqa=0.3,okvqa=0.2 [--stopping-strategy all_exhausted]] [--shutdown-sleep S]
    python scripts/stream_ddp.py --repo REPO_DIR_OR_HUB_ID --config small     # one process, no torchrun

Each rank runs the pipeline a training script would:
    load_dataset(repo, config, split, streaming=True) -> [reshard() -> shuffle(seed, buffer_size, max_buffer_input_shards=2)]
    -> split_dataset_by_node(rank, world_size[, strategy="shards" when shuffled]) -> set_epoch(e) -> DataLoader(num_workers)
and logs its row count, time to first batch and rows/s. With `--mixture` the stream is instead the
card's weighted mixture of the per-source configs (`mixture_stream`, the README's `mixture` snippet)
and each rank also logs its share of rows per source against the weights. Under torch.distributed (gloo: only
small Python objects travel between ranks, no GPU needed) rank 0 also logs the per-rank counts,
and with `--check` gathers every rank's row ids and verifies that the ranks are disjoint and
together complete. `--ids-out DIR` writes `ids-epoch{E}-rank{R}.txt`, one row id per line, in
the order the rank received them.
"""

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import datasets
import torch.distributed as dist
from datasets import interleave_datasets, load_dataset
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from arr_coc.process.cli import non_negative_int, positive_int  # noqa: E402

logger = logging.getLogger("stream_ddp")


@dataclass
class EpochResult:
    ids: list
    seconds: float
    first_batch_seconds: Optional[float]


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    rank, world_size = init_distributed(args.backend)
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s rank {rank}/{world_size}: %(message)s")
    if args.shutdown_sleep is not None:
        # Forked DataLoader workers inherit it.
        datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = args.shutdown_sleep
    try:
        if args.mixture:
            dataset, num_shards, expected_rows = load_mixture(args, rank, world_size)
            check_shard_rule(num_shards, world_size, args.num_workers, rank, whole_shards=True)
        else:
            source = load_split(args)
            # Shuffled as the card's `ddp` snippet: row-group shards, split whole among the ranks.
            strategy = "shards" if args.shuffle_buffer else "auto"
            check_shard_rule(source.num_shards, world_size, args.num_workers, rank, whole_shards=strategy == "shards")
            dataset = split_dataset_by_node(source, rank=rank, world_size=world_size, strategy=strategy)
            expected_rows = split_rows(source, args.split)
        ok = True
        for epoch in range(args.epochs):
            dataset.set_epoch(epoch)  # changes the shuffle (and, in datasets 5, the shard order) per epoch
            result = stream_epoch(dataset, args)
            report_rank(rank, epoch, result, args.num_workers)
            if args.mixture:
                report_shares(epoch, result.ids, args.mixture)
            if args.ids_out:
                write_ids(args.ids_out, epoch, rank, result.ids)
            ok = summarize(epoch, rank, world_size, result, args, expected_rows) and ok
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0 if ok else 1


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, help="Hub dataset id or a local repository directory")
    parser.add_argument("--config", default="small", help="config name (default: small)")
    parser.add_argument("--split", default="train", help="split (default: train)")
    parser.add_argument("--num-workers", type=non_negative_int, default=2, help="DataLoader workers per rank (default: 2)")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--epochs", type=positive_int, default=1)
    parser.add_argument("--shuffle-buffer", type=non_negative_int, default=0, help="shuffle buffer size; 0 = no shuffle")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed; must be the same on every rank")
    parser.add_argument("--no-decode", action="store_true", help="keep images as JPEG bytes instead of decoding to PIL")
    parser.add_argument("--max-rows", type=positive_int, help="stop each rank after about N rows per epoch")
    parser.add_argument("--ids-out", help="directory for ids-epoch{E}-rank{R}.txt files")
    parser.add_argument("--check", action="store_true", help="gather all row ids and check disjoint + complete ranks")
    parser.add_argument("--backend", default="gloo", help="torch.distributed backend under torchrun (default: gloo)")
    parser.add_argument(
        "--mixture",
        type=_weights,
        help="stream a weighted mixture of the per-source configs instead of --config, e.g. vqav2=0.5,gqa=0.3,okvqa=0.2",
    )
    parser.add_argument(
        "--stopping-strategy",
        default="all_exhausted",
        choices=["all_exhausted", "first_exhausted"],
        help="when a --mixture epoch ends (default: all_exhausted)",
    )
    parser.add_argument(
        "--shutdown-sleep",
        type=float,
        help="seconds datasets sleeps at the end of each Parquet stream pass in every worker (datasets 5.2: 5); 0 for smoke tests",
    )
    return parser.parse_args(argv)


def init_distributed(backend: str) -> tuple[int, int]:
    """(rank, world_size): from torchrun's environment, or (0, 1) for a plain `python` run."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def load_split(args: argparse.Namespace) -> datasets.IterableDataset:
    dataset = datasets.load_dataset(args.repo, args.config, split=args.split, streaming=True)
    if args.no_decode:
        dataset = dataset.decode(False)
    if args.shuffle_buffer:
        # As the card's `ddp` snippet. The same seed on every rank: all ranks must agree on the
        # shuffled shard order to split it.
        dataset = dataset.reshard().shuffle(seed=args.seed, buffer_size=args.shuffle_buffer, max_buffer_input_shards=2)
    return dataset


def mixture_stream(repo, weights, seed, rank=0, world_size=1, split="train", buffer_size=64,
                   stopping_strategy="all_exhausted"):
    """One streamed mixture of the per-source configs: each row comes from source `s` with probability
    weights[s] / sum(weights.values()), drawn with `seed`. Every source is read by Parquet row group,
    in a new order every epoch, and the mixed rows go through one small buffer (0: no shuffle); this
    rank's whole row groups when world_size > 1. The same seed on every rank."""
    sources = sorted(source for source, weight in weights.items() if weight > 0)  # one order everywhere
    total = sum(weights[source] for source in sources)
    streams = [load_dataset(repo, source, split=split, streaming=True).reshard() for source in sources]
    mixture = interleave_datasets(
        streams, probabilities=[weights[source] / total for source in sources], seed=seed,
        stopping_strategy=stopping_strategy,
    )
    if buffer_size:  # one buffer, after mixing; it is already fed from one row group of every source
        mixture = mixture.shuffle(seed=seed, buffer_size=buffer_size, max_buffer_input_shards=1)
    if world_size > 1:
        mixture = split_dataset_by_node(mixture, rank=rank, world_size=world_size, strategy="shards")
    return mixture


def load_mixture(args: argparse.Namespace, rank: int, world_size: int) -> tuple[datasets.IterableDataset, int, Optional[int]]:
    """(this rank's mixture, the unsplit mixture's shard count, the sources' rows in the split)."""
    def mixture(rank, world_size):
        return mixture_stream(
            args.repo, args.mixture, args.seed, rank=rank, world_size=world_size, split=args.split,
            buffer_size=args.shuffle_buffer, stopping_strategy=args.stopping_strategy,
        )  # fmt: skip

    dataset = mixture(rank, world_size)
    if args.no_decode:
        dataset = dataset.decode(False)
    # The shard count of a mixture is its smallest source's: the rule must hold for every source.
    num_shards = mixture(0, 1).num_shards if rank == 0 else 0
    expected_rows = None
    if args.stopping_strategy == "all_exhausted":  # an epoch then reaches every row of every source
        infos = datasets.get_dataset_infos(args.repo)
        expected_rows = sum(infos[source].splits[args.split].num_examples for source in args.mixture if args.mixture[source] > 0)
    return dataset, num_shards, expected_rows


def check_shard_rule(num_shards: int, world_size: int, num_workers: int, rank: int, whole_shards: bool = False) -> None:
    """Warn (once, on rank 0) when shards cannot keep every rank and worker busy. `whole_shards`:
    the split gives every rank whole shards even when they do not divide (strategy="shards")."""
    if rank != 0:
        return
    if num_shards < world_size and whole_shards:
        # datasets refuses this split (ValueError) rather than leave ranks without a shard.
        logger.error(
            '%d shards for %d ranks: split_dataset_by_node(strategy="shards") needs a shard for every rank and raises',
            num_shards,
            world_size,
        )
        return
    if num_shards % world_size and not whole_shards:  # also fewer shards than ranks: every rank still gets rows
        logger.warning(
            "%d shards do not divide among %d ranks: every rank reads every shard and keeps 1 row in %d",
            num_shards,
            world_size,
            world_size,
        )
        return
    per_rank = num_shards // world_size  # the fewest any rank gets; with whole_shards some get one more
    if num_workers > per_rank:
        logger.warning(
            "ranks with %d shards leave %d of their %d DataLoader workers idle", per_rank, num_workers - per_rank, num_workers
        )
    spread = f"{per_rank}" if num_shards % world_size == 0 else f"{per_rank}-{per_rank + 1}"
    logger.info("%d shards, %s per rank, %d DataLoader workers per rank", num_shards, spread, num_workers)


def split_rows(dataset: datasets.IterableDataset, split: str) -> Optional[int]:
    """The split's row count from the card's dataset_info, when the card has one."""
    splits = dataset.info.splits
    return splits[split].num_examples if splits and split in splits else None


def collate_ids(batch: list[dict]) -> list[str]:
    # Rows have images of different sizes, which the default collate cannot stack; a training
    # collator would run the processor here. The ids are all this script needs.
    return [row["id"] for row in batch]


def stream_epoch(dataset: datasets.IterableDataset, args: argparse.Namespace) -> EpochResult:
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers, collate_fn=collate_ids)
    ids, first_batch = [], None
    started = time.perf_counter()
    for batch in loader:
        if first_batch is None:
            first_batch = time.perf_counter() - started
        ids.extend(batch)
        if args.max_rows and len(ids) >= args.max_rows:
            break
    return EpochResult(ids=ids, seconds=time.perf_counter() - started, first_batch_seconds=first_batch)


def report_rank(rank: int, epoch: int, result: EpochResult, num_workers: int) -> None:
    first = "no batch" if result.first_batch_seconds is None else f"first batch after {result.first_batch_seconds:.2f} s"
    logger.info(
        "epoch %d: %d rows in %.2f s = %.1f rows/s (%d workers, %s)",
        epoch,
        len(result.ids),
        result.seconds,
        len(result.ids) / result.seconds if result.seconds else 0.0,
        num_workers,
        first,
    )


def report_shares(epoch: int, ids: list[str], weights: dict) -> None:
    """This rank's rows per source (ids start with the source) against the mixture's weights."""
    total = sum(weights.values())
    counts = {source: 0 for source in weights}
    for row_id in ids:
        source = row_id.split("/", 1)[0]
        counts[source] = counts.get(source, 0) + 1
    shares = ", ".join(
        f"{source} {count / max(len(ids), 1):.3f} (weight {weights.get(source, 0) / total:.3f})" for source, count in counts.items()
    )
    logger.info("epoch %d: source shares %s", epoch, shares)


def write_ids(directory: str, epoch: int, rank: int, ids: list[str]) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ids-epoch{epoch}-rank{rank}.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{row_id}\n" for row_id in ids)


def summarize(epoch: int, rank: int, world_size: int, result: EpochResult, args, expected_rows: Optional[int]) -> bool:
    """Rank 0 logs every rank's count and overall rows/s; with --check, False unless disjoint + complete."""
    mine = {"rows": len(result.ids), "seconds": result.seconds, "ids": result.ids if args.check else None}
    gathered = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(gathered, mine)  # collective: every rank calls it once per epoch
    else:
        gathered = [mine]
    if rank != 0:
        return True
    counts = [entry["rows"] for entry in gathered]
    slowest = max(entry["seconds"] for entry in gathered)
    logger.info(
        "epoch %d: rows per rank %s, total %d in %.2f s = %.1f rows/s over %d ranks",
        epoch,
        counts,
        sum(counts),
        slowest,
        sum(counts) / slowest if slowest else 0.0,
        world_size,
    )
    if not args.check:
        return True
    per_rank_ids = [entry["ids"] for entry in gathered]
    return check_partition(per_rank_ids, expected_rows, truncated=args.max_rows is not None, repeats_allowed=bool(args.mixture))


def check_partition(per_rank_ids: list[list[str]], expected_rows: Optional[int], truncated: bool, repeats_allowed: bool = False) -> bool:
    """No row twice (within or across ranks) and, for a whole epoch, as many rows as the card says.

    A mixture repeats a source within a rank once it is used up before the others (all_exhausted),
    so with `repeats_allowed` only rows on two ranks count as repeated.
    """
    distinct = set().union(*map(set, per_rank_ids))
    if repeats_allowed:
        repeated = sum(map(len, map(set, per_rank_ids))) - len(distinct)
    else:
        repeated = sum(map(len, per_rank_ids)) - len(distinct)
    if truncated or expected_rows is None:
        complete, verdict = True, "not checked" + (" (--max-rows)" if truncated else " (no dataset_info)")
    else:
        complete = len(distinct) == expected_rows
        verdict = f"{len(distinct)} distinct rows of {expected_rows}"
    where = "across ranks" if repeats_allowed else "within or across ranks"
    logger.info("check: %d rows repeated %s; completeness: %s", repeated, where, verdict)
    if repeated or not complete:
        logger.error("check failed: the ranks are not disjoint and complete")
        return False
    return True


def _weights(text: str) -> dict:
    """"vqav2=0.5,gqa=0.3" -> {"vqav2": 0.5, "gqa": 0.3}."""
    weights = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        source, _, weight = part.partition("=")
        try:
            weights[source.strip()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected SOURCE=WEIGHT, got {part!r}") from None
        if weights[source.strip()] < 0:
            raise argparse.ArgumentTypeError(f"weights must be >= 0, got {part!r}")
    if not weights or sum(weights.values()) <= 0:
        raise argparse.ArgumentTypeError(f"expected SOURCE=WEIGHT pairs with a positive sum, got {text!r}")
    return weights


if __name__ == "__main__":
    sys.exit(main())
