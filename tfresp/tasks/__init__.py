"""Training tasks beyond plain classification: masked-LM pretraining and text-model fine-tuning.

Each module registers a task or model hook (:class:`tfresp.concerns.Hook`, loaded with the built-in concerns):
the masked-LM task (:mod:`~tfresp.tasks.mlm`), the BERT checkpoint and LoRA merge
(:mod:`~tfresp.tasks.text_model`) and the fine-tuning recipe (:mod:`~tfresp.tasks.recipe`).
"""
