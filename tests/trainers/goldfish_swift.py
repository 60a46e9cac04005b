"""goldfish_swift.py: an ms-swift template, ``goldfish``, that trains on `goldfish-prep export --format hf` rows as they are.

ms-swift's ``--cached_dataset`` folders hold the *untokenized* rows (``messages``) and their
``lengths``: every template re-encodes each row at training time, so pre-computed labels
cannot pass through a built-in template. This template returns a row that already has
``input_ids`` and ``labels`` unchanged (packed rows lose their padding, attention_mask 0),
and encodes anything else as the base template would. Load it with
``--custom_register_path goldfish_swift.py --template goldfish --cached_dataset hf/``.
"""

from swift.template import Template, TemplateMeta, register_template


class GoldfishTemplate(Template):
    """Pre-tokenized rows go through untouched; ms-swift's collator pads labels with -100."""

    def encode(self, inputs, return_template_inputs=False, return_length=False):
        if isinstance(inputs, dict) and "input_ids" in inputs and "labels" in inputs:
            used = sum(inputs["attention_mask"]) if "attention_mask" in inputs else len(inputs["input_ids"])
            encoded = {"input_ids": list(inputs["input_ids"][:used]), "labels": list(inputs["labels"][:used])}
            if return_length:
                encoded["lengths"] = [used]
            return encoded
        return super().encode(inputs, return_template_inputs, return_length)


register_template(TemplateMeta("goldfish", prefix=[], prompt=["{{QUERY}}"], chat_sep=None, template_cls=GoldfishTemplate))
