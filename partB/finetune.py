"""Fine-tune an ImageNet-pretrained torchvision model on iNaturalist-12K (or the demo data).

    python partB/finetune.py --freeze all-but-last                      # offline EfficientNet-Lite0
    python partB/finetune.py --model resnet50 --freeze first-k --k 3
    python partB/finetune.py --model vit_b_16 --freeze gradual --unfreeze-every 2
    python partB/finetune.py --model resnet18 --weights ./resnet18.pth --freeze none
    python partB/finetune.py --list-stages --model convnext_tiny        # what a stage is

Input size, normalisation, heads and stages: docs/design.md, "Part B in detail".
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

from functools import partial

import click

from common.cli import OneLineErrors, data_options, echo_run_summary, explicit_options, training_options
from partB.transfer import FINETUNE_RECIPE, print_stages, resume_finetune, run_finetune
from common.pretrained import (FREEZE_STRATEGIES, OFFLINE_MODEL, apply_freeze, available_models, build_pretrained,
                               unknown_model_message)


class ModelName(click.ParamType):
    name = "model"

    def convert(self, value, param, ctx):
        if value not in available_models():
            self.fail(unknown_model_message(value), param, ctx)
        return value


def print_models(ctx, _, wanted):
    if wanted:
        click.echo("\n".join(available_models()))
        ctx.exit()


@click.command(cls=OneLineErrors, context_settings={"show_default": True, "max_content_width": 110})
@click.option("--model", type=ModelName(), default=OFFLINE_MODEL, help="Any torchvision classification model.")
@click.option("--weights", default="default",
              help="default (the model's best ImageNet weights), an enum name (IMAGENET1K_V2), a file path, or none.")
@click.option("--freeze", type=click.Choice(FREEZE_STRATEGIES), default="all-but-last")
@click.option("--k", type=int, default=0, help="first-k: number of stages frozen from the input side.")
@click.option("--backbone-lr-scale", type=float, default=0.1, help="none/gradual: backbone lr = this x --lr.")
@click.option("--unfreeze-every", type=int, default=1, help="gradual: epochs between unfreezing the next stage.")
@click.option("--feature-cache/--no-feature-cache", default=True,
              help="With --freeze all-but-last and --no-augment: compute backbone features once, train the head on them.")
@click.option("--list-stages", is_flag=True, help="Print the model's stages and trainable counts, then exit.")
@click.option("--list-models", is_flag=True, is_eager=True, expose_value=False, callback=print_models,
              help="Print the model names, then exit.")
@partial(data_options, image_size=None, image_size_help="Square input size [default: the weights' own crop size].")
@partial(training_options, **FINETUNE_RECIPE)
@click.option("--resume", default=None, metavar="RUN", help="Continue the fine-tuning run RUN from last.pt.")
@click.pass_context
def main(ctx, model, weights, freeze, k, backbone_lr_scale, unfreeze_every, feature_cache, list_stages, resume,
         **options):
    """Fine-tune a pretrained model with a freezing strategy."""
    if list_stages:
        net, _ = build_pretrained(model, weights="none", num_classes=10)
        apply_freeze(net, model, freeze, k)
        print_stages(net, model, freeze, k)
        return
    if resume:
        given = explicit_options(ctx, {**options, "model": model, "weights": weights, "freeze": freeze, "k": k})
        record = resume_finetune(resume, given, runs_dir=options["runs_dir"])
    else:
        record = run_finetune({**options, "model": model, "weights": weights, "freeze": freeze, "k": k,
                               "backbone_lr_scale": backbone_lr_scale, "unfreeze_every": unfreeze_every,
                               "feature_cache": feature_cache})
    echo_run_summary(record, options["runs_dir"])

if __name__ == "__main__":
    main()
