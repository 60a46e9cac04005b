"""One module per mask strategy; each exposes a pure ``drop_flat`` over a batch of documents."""
