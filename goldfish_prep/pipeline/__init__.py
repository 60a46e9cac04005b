"""The write path of ``goldfish-prep mask``, one step per module.

A document's way through it::

    readers (Record) -> _plan (batches at deterministic places)
      -> _batch, in pool workers (tokenize + the mask core)
      -> _shard (Arrow rows; _packing for --pack) -> _writer (sealed shard file)
      -> format.folder (commit, progress records, --resume, task ownership) -> _finish (manifest, written last)

Public entry points: ``job.MaskJob`` / ``job.run_mask`` (one run or one
``--num-tasks`` task), ``tasks.finalize_tasks`` (join split runs),
``ray_backend.run_mask_on_ray`` and ``pool`` (the ordered worker pool, also
used by ``verify``). Modules starting with ``_`` are internals of this package.
Everything that decides the output bytes is fixed before any worker starts,
so the result is identical for every ``--num-proc`` and every split into tasks.
"""
