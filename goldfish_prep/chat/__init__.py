"""Chat and instruction data: conversations in, token ids and the assistant's tokens out.

The flow of one conversation, one concept per module:
``records`` (a JSON object or row -> checked, normalised messages) ->
``template`` (the model's own Jinja chat template, compiled as transformers does) ->
``render`` (the rendered text, the assistant's character spans, token ids with
offsets, and which tokens are the assistant's). The goldfish rule applied inside
the assistant's tokens is the pure ``strategies.answer_local``.
"""
