"""Inference, apart from training: turn uint8 images into model inputs, logits and validation metrics.

Test evaluation, the camera trap's crop classifier, filters, guided backprop and Part B's
feature cache use this module; so does the training loop for its validation pass. Nothing here
updates a model.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from common.augment import AugmentConfig, augment_batch
from common.device import autocast


def prepare_batch(images_uint8, mean, std, augment: Optional[AugmentConfig] = None, generator=None, channels_last=False):
    """uint8 batch (already on the device) → augmented, normalised float batch; a float batch is Part B's cached
    backbone features and passes through."""
    if images_uint8.is_floating_point():
        return images_uint8
    x = images_uint8.float().div_(255.0)
    if augment is not None:
        x = augment_batch(x, augment, generator)
    mean = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)  # lists, or tensors on the device
    std = torch.as_tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict(model, images_uint8, mean, std, device, batch_size=256, precision="off", channels_last=False):
    """Logits (float32, on CPU) for a uint8 N×3×H×W tensor, in eval mode without gradients."""
    was_training = model.training
    model.eval()
    outputs = []
    mean, std = torch.tensor(mean, device=device), torch.tensor(std, device=device)
    for chunk in images_uint8.split(batch_size):
        x = prepare_batch(chunk.to(device, non_blocking=True), mean, std, channels_last=channels_last)
        with autocast(device, precision):
            outputs.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(outputs)


def validate(model, tensor_set, mean, std, device, precision="off", channels_last=False, batch_size=256):
    """Validation loss — plain cross-entropy, whatever smoothing the training loss used, so runs with
    different smoothing compare (as timm reports it) — and accuracy."""
    logits = predict(model, tensor_set.images, mean, std, device, batch_size, precision, channels_last)
    loss = F.cross_entropy(logits, tensor_set.labels).item()
    accuracy = (logits.argmax(1) == tensor_set.labels).float().mean().item()
    return {"loss": loss, "acc": accuracy, "logits": logits}
