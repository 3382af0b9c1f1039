"""Click options shared by the scripts, so every script spells an option the same way."""
import click

from common.device import DEVICES, PRECISIONS
from common.errors import UserError
from common.models import ACTIVATIONS, DROPOUT_PLACES, ORGANISATIONS
from common.training import OPTIMIZERS, SCHEDULERS, TrainConfig
from common.tracking import WANDB_MODES

D = TrainConfig()


class OneLineErrors(click.Command):
    """A click command that prints the library's UserError as one line (`Error: ...`, exit 1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            raise click.ClickException(err.message) from None


DEVICE_OPTION = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                             help="auto = the GPU when there is one.")


def stack_options(decorators):
    """Apply a list of click decorators in reading order."""
    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def echo_run_summary(record, runs_dir):
    """The one line a training script ends with."""
    summary = record["summary"]
    click.echo(f"run {record['name']}: best val acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch']} "
               f"({summary['epochs_done']} epochs, {summary['mean_images_per_s']:.0f} img/s) -> {runs_dir}/{record['name']}")


def data_options(func, image_size=D.image_size, image_size_help="Square input size in pixels."):
    return stack_options([
        click.option("--data-dir", default=D.data_dir, show_default=True,
                     help="Folder holding inaturalist_12K/{train,val} or nature_12K.zip (downloaded there if absent)."),
        click.option("--image-size", type=int, default=image_size, show_default=image_size is not None,
                     help=image_size_help),
        click.option("--val-fraction", type=float, default=D.val_fraction, show_default=True,
                     help="Share of each training class held out for validation."),
        click.option("--seed", type=int, default=D.seed, show_default=True, help="Controls split, init and batch order."),
        click.option("--cache-dir", default=D.cache_dir, show_default=True, help="Decoded-image and split cache."),
    ])(func)


def training_options(func, **recipe_overrides):
    """The training flags; `recipe_overrides` (e.g. Part B's epochs, lr) replace the defaults they
    name, so --help shows what actually runs."""
    D = TrainConfig(**recipe_overrides)
    return stack_options([
        click.option("--epochs", type=int, default=D.epochs, show_default=True),
        click.option("--batch-size", type=int, default=D.batch_size, show_default=True),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=D.optimizer, show_default=True),
        click.option("--lr", type=float, default=D.lr, show_default=True, help="Peak learning rate."),
        click.option("--weight-decay", type=float, default=D.weight_decay, show_default=True,
                     help="Weight decay, never on biases or norm layers: decoupled for adamw/nadam/radam, L2 added to "
                          "the gradient for sgd and adam."),
        click.option("--momentum", type=float, default=D.momentum, show_default=True, help="SGD Nesterov momentum."),
        click.option("--scheduler", type=click.Choice(SCHEDULERS), default=D.scheduler, show_default=True,
                     help="cosine = linear warm-up then cosine decay, stepped per iteration."),
        click.option("--warmup-epochs", type=float, default=D.warmup_epochs, show_default=True),
        click.option("--step-size", type=int, default=D.step_size, show_default=True, help="step scheduler: epochs per decay."),
        click.option("--gamma", type=float, default=D.gamma, show_default=True, help="step scheduler: decay factor."),
        click.option("--label-smoothing", type=float, default=D.label_smoothing, show_default=True),
        click.option("--grad-clip", type=float, default=D.grad_clip, show_default=True, help="Max gradient norm; 0 = off."),
        click.option("--augment/--no-augment", default=D.augment, show_default=True,
                     help="Random resized crop, flip, rotation and colour jitter on the device."),
        click.option("--aug-strength", type=float, default=D.aug_strength,
                     help="0..1 [default: by budget: 0 up to 10 epochs, rising to 1 at 60 (0.1 at 15, 0.4 at 30)]."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=D.precision, show_default=True,
                     help="auto: bf16 on sm80+ GPUs and bf16 CPUs, fp16+GradScaler on sm70-75, else fp32."),
        click.option("--channels-last/--no-channels-last", default=D.channels_last, show_default=True),
        click.option("--compile", "compile", is_flag=True, default=False, help="torch.compile the model."),
        DEVICE_OPTION,
        click.option("--deterministic", is_flag=True, default=D.deterministic,
                     help="Bit-exact GPU runs and resumes: cuDNN/cuBLAS deterministic kernels, no autotuning (slower)."),
        click.option("--tf32/--no-tf32", default=D.tf32, show_default=True,
                     help="Allow TF32 tensor cores for fp32 matmuls/convs on sm80+ GPUs."),
        click.option("--data-on-device", type=click.Choice(["auto", "yes", "no"]), default=D.data_on_device,
                     show_default=True, help="Keep the uint8 training set on the GPU (auto: if it fits in half the "
                     "free memory; else batches stream from pinned host memory)."),
        click.option("--runs-dir", default=D.runs_dir, show_default=True),
        click.option("--run-name", default=None, help="Folder name under --runs-dir (default: time + hash)."),
        click.option("--wandb", type=click.Choice(WANDB_MODES), default=D.wandb, show_default=True,
                     help="auto = online with credentials, else offline (sync later)."),
        click.option("--wandb-project", default=D.wandb_project, show_default=True),
        click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines."),
    ])(func)


def model_options(func):
    return stack_options([
        click.option("--filters", default=None, help="Filters per block, e.g. 32,64,128,256,512 [default: that]."),
        click.option("--base-filters", type=int, default=None, help="Base filter count, with --organisation."),
        click.option("--organisation", type=click.Choice(ORGANISATIONS), default=None,
                     help="same / double / half the filters from block to block."),
        click.option("--kernel-sizes", default=None, help="Kernel size for all blocks (3) or per block (5,5,3,3,3)."),
        click.option("--padding", default="same", show_default=True, help="same, valid or a whole number."),
        click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default="gelu", show_default=True),
        click.option("--batch-norm/--no-batch-norm", default=True, show_default=True),
        click.option("--dropout", type=float, default=0.2, show_default=True),
        click.option("--dropout-where", type=click.Choice(DROPOUT_PLACES), default="dense", show_default=True),
        click.option("--dense-units", type=int, default=512, show_default=True),
    ])(func)


def explicit_options(ctx: click.Context, values: dict) -> dict:
    """Only the options the user typed (not defaults): what a resume must check."""
    return {k: v for k, v in values.items()
            if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}


def padding_value(value):
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value
