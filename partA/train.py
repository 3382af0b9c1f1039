"""Train the 5-block CNN from scratch on iNaturalist-12K (or the demo data).

    python partA/train.py --data-dir data --epochs 30
    python partA/train.py --base-filters 32 --organisation double --activation mish
    python partA/train.py --resume <run-name>        # continue a killed run exactly

Never reads the test folder: validation is a seeded, stratified 20% of train.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without install
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.cli import (OneLineErrors, data_options, echo_run_summary, explicit_options, model_options, padding_value,
                        training_options)
from partA.from_scratch import resume_scratch, run_scratch


@click.command(cls=OneLineErrors, context_settings={"show_default": True, "max_content_width": 110})
@data_options
@model_options
@training_options
@click.option("--resume", "resume", default=None, metavar="RUN", help="Continue the run RUN (name or folder) from last.pt.")
@click.pass_context
def main(ctx, resume, **options):
    """Train the Part A CNN; writes runs/<name>/{record.json,last.pt,best.pt}."""
    options["padding"] = padding_value(options["padding"])
    if resume:
        record = resume_scratch(resume, explicit_options(ctx, options), runs_dir=options["runs_dir"])
    else:
        record = run_scratch(options)
    echo_run_summary(record, options["runs_dir"])

if __name__ == "__main__":
    main()
