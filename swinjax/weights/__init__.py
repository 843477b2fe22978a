"""Pretrained weights: conversion between timm's / the official Swin's PyTorch layout and swinjax
parameters, both ways (:mod:`.convert`; Hugging Face transformers' layout read through
:mod:`.hf_layout`), timm's resampling of tensors for a model of another size
(:mod:`.resample`), reading them from files and the Hugging Face Hub (:mod:`.load`), and the
error for a checkpoint of another architecture (:mod:`.mismatch`: a few keys, the counts, the
fields that differ).

May import: :mod:`swinjax.models` (parameter shapes, stage geometry), :mod:`swinjax.network`,
:mod:`swinjax.errors`; not data, training or the programs.
"""

from swinjax.weights.convert import (
    LoadReport,
    convert_checkpoint,
    params_from_timm,
    params_to_timm,
)
from swinjax.weights.load import format_report, load_pretrained, load_state_dict

__all__ = [
    "LoadReport",
    "convert_checkpoint",
    "format_report",
    "load_pretrained",
    "load_state_dict",
    "params_from_timm",
    "params_to_timm",
]
