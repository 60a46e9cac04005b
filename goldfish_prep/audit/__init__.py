"""The privacy audit: does a model give away the documents it was trained on?

``memorization`` measures what the paper measured (greedy or beam-search
reproduction of a suffix). A reviewer who must sign off a model needs more:
the same figures on *control* documents the model never saw (the floor),
the membership-inference attacks that work in practice, a sampling attacker,
and whether the model's own writing stays varied.

One concept per module. The statistics are pure (numpy in, numbers out):
``roc`` (AUC and TPR at a fixed FPR, exact), ``membership`` (per-document
attack scores from per-token log-probabilities), ``gap`` (targets against
controls), ``diversity`` (distinct-n and repetition). The model-facing parts
need torch: ``token_stats`` (one forward pass per document), ``mask_attack``
(the public goldfish rule recomputed by an attacker), ``sampling`` (the
sampling extraction attack), and ``run`` ties them into an ``AuditReport``
(``report``); ``plot`` draws it.
"""
