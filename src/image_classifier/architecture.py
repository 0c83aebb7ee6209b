"""What a model's keyword arguments may be: the shape of the architecture, never a source of weights.

A bundle's ``model_kwargs`` go to ``timm.create_model`` when it is loaded. timm also takes arguments that
fetch or read weights (``pretrained=True`` with ``pretrained_cfg_overlay={"url": ...}`` downloads that URL;
``checkpoint_path`` reads that file), so a bundle from elsewhere could make its loader reach out. Only the
arguments below are allowed, with plain values that name no file or URL.
"""

from __future__ import annotations

import re
from typing import Any

# timm (and baseline_cnn) arguments that describe the architecture or its regularisation, nothing else.
ARCHITECTURE_KWARGS: frozenset[str] = frozenset(
    {
        "act_layer",
        "attn_drop_rate",
        "channel_multiplier",
        "class_token",
        "depth",
        "depth_multiplier",
        "depths",
        "drop_block_rate",
        "drop_path_rate",
        "drop_rate",
        "dynamic_img_pad",
        "dynamic_img_size",
        "embed_dim",
        "embed_dims",
        "global_pool",
        "head_hidden_size",
        "head_init_scale",
        "img_size",
        "in_chans",
        "layer_scale_init_value",
        "ls_init_value",
        "mlp_ratio",
        "no_embed_class",
        "norm_layer",
        "num_heads",
        "output_stride",
        "patch_drop_rate",
        "patch_size",
        "pos_drop_rate",
        "proj_drop_rate",
        "qkv_bias",
        "reg_tokens",
        "stem_type",
        "width",
        "zero_init_last",
    }
)
# Named on their own in the refusal: each loads weights or a weight config from somewhere.
WEIGHT_SOURCES = ("pretrained", "pretrained_cfg", "checkpoint_path", "weights", "cache_dir", "file", "url")
# A string that could name a file or a URL: a scheme, a path separator, a home or relative path.
PATH_LIKE = re.compile(r"://|[/\\]|^[~.]")


def refused_kwargs(kwargs: Any) -> list[str]:
    """Why each refused argument of ``kwargs`` is refused (empty when all are allowed)."""
    if not isinstance(kwargs, dict):
        return [f"model_kwargs is a {type(kwargs).__name__}, not a mapping of architecture arguments"]
    reasons = []
    for name, value in kwargs.items():
        if any(str(name).startswith(source) for source in WEIGHT_SOURCES):
            reasons.append(f"'{name}' is a weight source")
        elif name not in ARCHITECTURE_KWARGS:
            reasons.append(f"'{name}' is not an architecture argument")
        elif not _plain(value):
            reasons.append(f"'{name}'={value!r} is not a plain value (a number, a word, or a list of them)")
    return reasons


def _plain(value: Any) -> bool:
    """A number, a boolean, ``None``, a string naming no path or URL, or a list of these."""
    if isinstance(value, (list, tuple)):
        return all(_plain(item) and not isinstance(item, (list, tuple)) for item in value)
    if isinstance(value, str):
        return not PATH_LIKE.search(value)
    return value is None or isinstance(value, (bool, int, float))


def describe_refusal(reasons: list[str]) -> str:
    """One line for :func:`refused_kwargs`' reasons."""
    return (
        f"{'; '.join(reasons)}. A model's kwargs may only shape its architecture "
        "(image_classifier.architecture.ARCHITECTURE_KWARGS lists them), never name weights, files or URLs"
    )
