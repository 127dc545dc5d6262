"""The always-on evaluation concern: metrics on the test split (never the training split)."""
from tfresp.concerns import Concern, register
from tfresp.evaluation.metrics import classification_metrics


@register
class Evaluation(Concern):
    config_key = "evaluation"
    order = 0

    def enabled(self, config) -> bool:
        return config.task == "classification"

    def audit(self, ctx):
        data = ctx.data
        section = {"test": classification_metrics(data.test.y, ctx.predictions["test"], data.classes)}
        if "validation" in ctx.predictions:
            section["validation"] = classification_metrics(data.validation.y, ctx.predictions["validation"],
                                                           data.classes)
        section["split_used"] = "test"
        return section
