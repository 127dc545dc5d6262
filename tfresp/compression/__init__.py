"""tfresp.compression: pruning, quantization, distillation and their re-measurement.

Modules: ``config`` (the ``compression`` section), ``concern`` (plan/audit), ``_tfmot`` (the
only place tensorflow-model-optimization is called), ``pruning_scheduler`` (mask-based
``PruningScheduler`` for any model), ``masks``/``schedule`` (plain-array algorithms),
``distiller`` (``Distiller``), ``measure`` (accuracy, group gap, size, latency). TFLite export
lives in :mod:`tfresp.export.tflite`.
"""
