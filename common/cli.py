"""Click options shared by the scripts, so every script spells an option the same way. The training options
are generated from TrainConfig's fields (common.recipe): one declaration each."""
import dataclasses
import functools
import math
import os
import shlex
import signal
import sys
import typing
from pathlib import Path

import click

from common.device import DEVICES
from common.errors import UserError
from common.io import is_disk_full, no_space
from common.models import ACTIVATIONS, DROPOUT_PLACES, ORGANISATIONS, CNNConfig
from common.recipe import TrainConfig
from common.runs import last_run_dir, resume_hint, validate_run_name

D = TrainConfig()


# Set by a caller that reports an interruption itself (make assignment): the script then exits without its own line.
INTERRUPT_QUIET_ENV = "INAT_LAB_QUIET_INTERRUPT"


class OneLineErrors(click.Command):
    """A click command that prints the library's UserError as one line (`Error: ...`, exit 1), and stops on Ctrl-C
    or SIGTERM (kill, a scheduler, make assignment) the same way: runs save their record as interrupted (their
    checkpoints hold the last finished epoch), one line says so, exit 130."""

    def invoke(self, ctx):
        try:
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt, as Ctrl-C does
        except ValueError:  # not the main thread (a test calling the command in a thread): keep the default
            pass
        try:
            return super().invoke(ctx)
        except UserError as err:
            raise click.ClickException(err.message) from None
        except OSError as err:  # a full disk wherever it strikes (a video, a cache, a library's own file): one line
            if not is_disk_full(err):
                raise
            where = Path(err.filename) if err.filename else Path.cwd() / "?"
            raise click.ClickException(no_space(where.parent, where.name if err.filename else "a file").message) from None
        except KeyboardInterrupt:
            if not os.environ.get(INTERRUPT_QUIET_ENV):
                hint = resume_hint()
                click.echo(f"interrupted: what finished is saved; {hint}" if hint else
                           "interrupted: what finished is saved (a training run continues with --resume <run>)", err=True)
            ctx.exit(130)


class PlainName(click.ParamType):
    """A name that becomes a folder (a sweep, an assignment): one plain folder name, checked before anything runs."""
    name = "NAME"

    def convert(self, value, param, ctx):
        try:
            return validate_run_name(value)
        except UserError as err:
            self.fail(err.message.replace("--run-name ", ""), param, ctx)


class SweepName(PlainName):
    """A sweep to read: its name (a folder under RUNS_DIR/sweeps), or a sweep folder given by path — one that holds
    the sweep's config.yaml, never any folder (../../etc is neither)."""
    name = "SWEEP"

    def convert(self, value, param, ctx):
        if not Path(value).is_dir():
            return super().convert(value, param, ctx)
        if not (Path(value) / "config.yaml").is_file():
            self.fail(f"{value} is a folder with no sweep config (config.yaml); give a sweep's name or its folder "
                      f"under RUNS_DIR/sweeps", param, ctx)
        return value


class OutputFolder(click.ParamType):
    """An --out folder: not an existing file, and creatable/writable where it would be created — checked before
    anything runs, without creating it (a failed command leaves no empty folder)."""
    name = "FOLDER"

    def convert(self, value, param, ctx):
        path = Path(value)
        if path.exists() and not path.is_dir():
            self.fail(f"{value} is a file, not a folder; give a folder", param, ctx)
        existing = next(p for p in [path, *path.absolute().parents] if p.exists())
        if not existing.is_dir():
            self.fail(f"{existing} is a file, so {value} cannot be created; give another folder", param, ctx)
        if not os.access(existing, os.W_OK | os.X_OK):
            self.fail(f"{existing} is not writable; choose a writable folder", param, ctx)
        return value


class PositiveNumber(click.ParamType):
    """A finite number above zero (a budget in minutes): nan, inf and 0 are refused."""
    name = "NUMBER"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r} must be a finite number above 0", param, ctx)
        return number


PLAIN_NAME, SWEEP_NAME, OUTPUT_FOLDER, POSITIVE_NUMBER = PlainName(), SweepName(), OutputFolder(), PositiveNumber()


DEVICE_OPTION = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                             help="auto = the GPU when there is one.")


def stack_options(decorators):
    """Apply a list of click decorators in reading order."""
    return lambda func: functools.reduce(lambda wrapped, decorator: decorator(wrapped), reversed(decorators), func)


def python_command():
    """How to call this same Python from the repo root (.venv/bin/python, not a bare `python` that may lack the venv)."""
    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable


def invoked_command():
    """The command line this script was started with, as the README writes it (python <script> <args>): what a
    report shows as the command that ran."""
    return shlex.join(["python", *sys.argv])


def echo_run_summary(record, runs_dir):
    """The one line a training script ends with, naming the run's folder (a run resumed by its path is where it is)."""
    summary = record["summary"]
    run_dir = last_run_dir() or Path(runs_dir) / record["name"]
    click.echo(f"run {record['name']}: best val acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch']} "
               f"({summary['epochs_done']} epochs, {summary['mean_images_per_s']:.0f} img/s) -> {run_dir}")


DATA_FIELDS = ("data_dir", "image_size", "val_fraction", "seed", "cache_dir")
# every other field with a flag, in the order TrainConfig declares them: a new field is a new option, nothing more
TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                        if f.metadata.get("flag", True) and f.name not in DATA_FIELDS)


def option_for(spec: dataclasses.Field, default, help_text=None):
    """The click option of one TrainConfig field: its name, type, choices, default and help come from the field.
    A boolean that is on by default gets an off switch (--augment/--no-augment); one that is off is a flag."""
    name = "--" + spec.name.replace("_", "-")
    help_text = help_text or spec.metadata.get("help") or None
    if spec.type is bool:
        if spec.default:
            return click.option(f"{name}/--no-{name[2:]}", spec.name, default=default, show_default=True, help=help_text)
        return click.option(name, spec.name, is_flag=True, default=default, help=help_text)
    choices = spec.metadata.get("choices")
    kind = click.Choice(list(choices)) if choices else next(
        (t for t in typing.get_args(spec.type) if t is not type(None)), spec.type)  # Optional[int] -> int
    return click.option(name, spec.name, type=kind, default=default, show_default=default is not None, help=help_text)


def config_options(names, overrides=None, helps=None):
    """click options generated from TrainConfig's fields `names`, in that order; `overrides` replace defaults (Part
    B's recipe), so --help shows what actually runs. One declaration per option: the field."""
    specs = {f.name: f for f in dataclasses.fields(TrainConfig)}
    overrides, helps = overrides or {}, helps or {}
    return stack_options([option_for(specs[n], overrides.get(n, specs[n].default), helps.get(n)) for n in names])


def data_options(func, image_size=D.image_size, image_size_help=None):
    return config_options(DATA_FIELDS, {"image_size": image_size}, {"image_size": image_size_help})(func)


def training_options(func, **recipe_overrides):
    """The training flags; `recipe_overrides` (e.g. Part B's epochs, lr) replace the defaults they name."""
    return config_options(TRAINING_FIELDS, recipe_overrides)(func)


def model_options(func):
    """The Part A model's options; their defaults are CNNConfig's (common.models), declared there once."""
    M = CNNConfig()
    return stack_options([
        click.option("--filters", default=None, help=f"Filters per block [default: {','.join(map(str, M.filters))}]."),
        click.option("--base-filters", type=int, default=None, help="Base filter count, with --organisation."),
        click.option("--organisation", type=click.Choice(ORGANISATIONS), default=None,
                     help="same / double / half the filters from block to block."),
        click.option("--kernel-sizes", default=None, help="Kernel size for all blocks (3) or per block (5,5,3,3,3) "
                                                          f"[default: {M.kernel_sizes[0]}]."),
        click.option("--padding", default=M.padding, show_default=True, help="same, valid or a whole number."),
        click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default=M.activation, show_default=True),
        click.option("--batch-norm/--no-batch-norm", default=M.batch_norm, show_default=True),
        click.option("--dropout", type=float, default=M.dropout, show_default=True),
        click.option("--dropout-where", type=click.Choice(DROPOUT_PLACES), default=M.dropout_where, show_default=True),
        click.option("--dense-units", type=int, default=M.dense_units, show_default=True),
    ])(func)


def explicit_options(ctx: click.Context, values: dict) -> dict:
    """Only the options the user typed (not defaults): what a resume must check."""
    return {k: v for k, v in values.items()
            if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}


def padding_value(value):
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value
