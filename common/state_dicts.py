"""Strict state-dict loading with an error that names what does not match (shared by checkpoints and
pretrained weights files)."""
from common.errors import UserError


def load_model_state(model, state_dict, source):
    """Strict load_state_dict with a one-line error naming the mismatched keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
                  for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:3]}")
        if mismatched:
            parts.append(f"shape mismatch: {mismatched[:3]}")
        raise UserError(f"{source} does not match the model ({'; '.join(parts)}); was it made with another config?")
    model.load_state_dict(state_dict, strict=True)
