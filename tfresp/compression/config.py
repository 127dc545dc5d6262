"""Config of the compression concern.

Example (YAML)::

    compression:
      prune: 0.8               # target sparsity of every pruned kernel
      schedule: polynomial     # constant | polynomial (Zhu & Gupta 2017)
      structured: null         # "2:4": two non-zeros in every group of four weights
      include: null            # layer-name globs to prune (default: every kernel)
      exclude: [logits]        # layer-name globs never pruned
      quantize: int8           # qat | int8 | dynamic | float16
      distill: {hidden: [32], temperature: 4.0, alpha: 0.5}   # tabular: an MLP student
      # distill: {layers: 2, temperature: 2.0, alpha: 0.5, export: true}   # BERT teacher: a 2-layer BERT
      calibration: train       # rows calibrating int8 ranges: train | path to public CSV/parquet
"""
from typing import List, Literal, Optional, Union

from pydantic import Field, model_validator

from tfresp._configbase import Section


class DistillConfig(Section):
    """Knowledge distillation of a smaller student from the run's trained model (Hinton et al. 2015).

    ``data``: ``train`` (the run's training rows: the student sees private data, so under DP the
    teacher's epsilon does *not* carry over and the run refuses it) or a path to a CSV/parquet of
    public, unlabeled rows with the same feature columns (labels unused, ``alpha`` must be 0); for text
    runs, the public file needs the ``data.text`` column.

    ``hidden`` shapes the MLP student of tabular runs; ``layers``/``teacher_layers``/``export`` the BERT
    student of text runs (see :mod:`tfresp.compression.student`).
    """

    hidden: List[int] = [32]
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    epochs: Optional[int] = Field(None, ge=1)
    data: str = "train"
    # BERT teachers (text runs): the student is a BERT of the teacher's width with ``layers`` encoder layers,
    # initialized from ``teacher_layers`` (default: evenly spread, first and last kept: [0, 5] of 6)
    layers: Optional[int] = Field(None, ge=1)
    teacher_layers: Optional[List[int]] = None
    learning_rate: Optional[float] = Field(None, gt=0)  # default: train.learning_rate
    export: bool = False  # BERT students: also write saved_model_student/ (raw strings in, like saved_model/)


class CompressionConfig(Section):
    """Pruning, quantization and distillation."""

    prune: Optional[float] = Field(None, ge=0, lt=1)
    schedule: Literal["constant", "polynomial"] = "polynomial"
    structured: Optional[Literal["2:4"]] = None
    include: Optional[List[str]] = None
    exclude: Optional[List[str]] = None
    method: Literal["auto", "tfmot", "mask"] = "auto"
    begin: float = Field(0.0, ge=0, lt=1)
    end: float = Field(0.75, gt=0, le=1)
    frequency: int = Field(0, ge=0)
    quantize: Optional[Literal["qat", "int8", "dynamic", "float16"]] = None
    distill: Optional[Union[DistillConfig, bool]] = None
    calibration: str = "train"
    representative_rows: int = Field(200, ge=1, le=100000)
    latency_runs: int = Field(200, ge=5, le=100000)

    @model_validator(mode="after")
    def _checks(self):
        if self.end <= self.begin:
            raise ValueError(f"`end` ({self.end}) must be greater than `begin` ({self.begin}); both are "
                             "fractions of the training steps")
        if self.distill is True:
            self.distill = DistillConfig()
        elif self.distill is False:
            self.distill = None
        return self
