"""Training tasks beyond plain classification: masked-LM pretraining and text-model fine-tuning.

Importing :mod:`tfresp.tasks.concerns` registers the task concerns (MLM evaluation, BERT checkpoint
and LoRA merge); the BERT model builders import it, so any run with ``model.kind: bert | checkpoint``
has them.
"""
