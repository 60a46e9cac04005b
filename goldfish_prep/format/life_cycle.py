"""An output folder's life cycle: what a run may keep, delete or move when it starts in a folder that holds something.

Why a module of its own: these are the rules behind ``--overwrite`` and
``--resume`` (refuse a non-empty or foreign folder; set a finished output aside
and put it back if the new run fails; keep exactly the completed shards whose
bytes still hash to their records; delete a task's own stale files and nothing
else), and they are written once, on top of the storage primitives every
``OutputFolder`` provides, so a local disk and an object store obey the same
ones. ``OutputFolder`` exposes them as methods (``prepare``, ``admit``,
``put_back`` ...); which task owns which file is ``ownership``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from goldfish_prep.errors import OutputError
from goldfish_prep.format.lock import is_lock_name
from goldfish_prep.format.names import PROGRESS_DIR, RUN_FILE, STATE, is_shard_filename, is_temporary
from goldfish_prep.format.ownership import (
    Task,
    first_difference,
    inputs_seen,
    is_output_entry,
    progress_path,
    refuse_another_run,
    shard_run,
    stale_entries,
    stale_progress,
    without_engine,
)

if TYPE_CHECKING:
    from goldfish_prep.format.folder import OutputFolder

#: ``.goldfish/replaced/``: a finished output that ``--overwrite`` replaces, kept until the new one is committed
REPLACED = "replaced"


def refuse_unless_empty(folder: OutputFolder) -> None:
    """The rule of a plain run: a new or empty folder, unless the user said otherwise."""
    if folder.is_folder() and meaningful_entries(folder):
        raise OutputError(
            f"output folder {folder.where()} already exists and is not empty; pass --overwrite to replace it, "
            "or --resume to finish an interrupted run"
        )


def admit(folder: OutputFolder, existing: str) -> None:
    """Refuse, changing nothing, a location ``existing`` may not write to: a file, a non-empty folder under
    ``"refuse"``, a folder holding files goldfish-prep did not write. Called before the lock is taken, since
    taking it creates the progress folder."""
    if folder.exists() and not folder.is_folder():
        raise OutputError(f"output {folder.where()} exists and is not a folder; choose a folder path with -o")
    entries = meaningful_entries(folder) if folder.is_folder() else []
    if not entries:
        return
    if existing == "refuse":
        folder.refuse_unless_empty()
    foreign = [name for name in entries if not is_output_entry(name)]
    if foreign:
        raise OutputError(
            f"output folder {folder.where()} holds files goldfish-prep did not write ({', '.join(foreign[:3])}); "
            "refusing to touch them. Choose a new or empty folder"
        )


def previous_run(folder: OutputFolder) -> dict[str, Any] | None:
    """The run this folder was started with, for ``--resume``; None when none was described yet.

    Read once and handed to ``prepare``: tasks of one run rewrite ``run.json``
    while they start and finish, so a second reading could see another task's
    newer description than the one the caller matched its run against.
    """
    if not folder.has_run() and not folder.shard_record_names():
        # killed before the run was described (or, with tasks, no task has started yet):
        # no shard was completed, so there is nothing to keep and resuming is starting afresh
        return None
    try:
        run = folder.read_run()
        if not isinstance(run, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise OutputError(
            f"cannot resume {folder.where()}: no readable {PROGRESS_DIR}/{RUN_FILE}; pass --overwrite to start again"
        ) from exc
    return run


def prepare(
    folder: OutputFolder,
    run: dict[str, Any],
    existing: str,
    task: Task | None = None,
    previous: Any = ...,
    seen: list[dict[str, Any]] | None = None,
) -> dict[int, dict[str, Any]]:
    """Make the folder ready for ``run``; return the completed shards' records when resuming.

    ``existing`` is ``"refuse"``, ``"overwrite"`` or ``"resume"``; a ``task``
    touches only its own shards (``ownership``); None is a plain run.
    ``previous``: what ``previous_run`` returned when the caller read it
    (read here when not given). ``seen``: the inputs as this run found them at
    its start (sizes and times, before a resume takes hashes over): a completed
    shard is kept only if the run that made it saw the same.
    """
    task = task or Task()
    folder.admit(existing)
    folder.made_by = shard_run(run)
    folder.seen_inputs = inputs_seen(seen) if seen is not None else None
    entries = meaningful_entries(folder)
    completed: dict[int, dict[str, Any]] = {}
    if entries:
        folder.check_writable()  # before anything is removed
        if existing == "overwrite" and task.alone and folder.is_finished():
            try:
                set_aside(folder, entries)
            except OSError as exc:
                raise folder.unwritable(exc) from exc
        elif existing == "overwrite" and task.alone:
            for name in entries:
                if name == PROGRESS_DIR:  # all but the lock files, which are held now
                    for inner in folder.entries(PROGRESS_DIR):
                        if not is_lock_name(inner):
                            folder.remove(progress_path(inner))
                else:
                    folder.remove(name)
        else:
            inputs_changed = False
            if existing == "resume":
                completed, inputs_changed = completed_shards(folder, run, task, folder.previous_run() if previous is ... else previous)
            if inputs_changed and task.alone and folder.is_finished():
                # shards are redone from inputs seen otherwise, and the bytes are compared with the finished run's
                # hashes only at the end: set the finished output aside, so that a run that fails then puts it back
                try:
                    set_aside(folder, entries)
                except OSError as exc:
                    raise folder.unwritable(exc) from exc
                completed = {}
            else:  # inputs seen otherwise: the finished files go too (a task may not set aside what is not its own)
                remove_stale(folder, completed, task, keep_finished=existing == "resume" and not inputs_changed)
    # a dead run's shard uploads still open (invisible, billed) on a store: this run holds the lock now
    folder.abort_open_uploads(task.owns)
    try:
        folder.make_progress_folder()
        folder.write_json(progress_path(RUN_FILE), run)
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder.where()} ({exc.strerror}); choose a writable location with -o") from exc
    return completed


def set_aside(folder: OutputFolder, entries: list[str]) -> None:
    """``--overwrite`` of a finished output: move it whole (renames, no copy) into ``.goldfish/replaced/``.

    The new run's commit deletes it (``write_finished``); a run that fails gives it back
    (``put_back``); one killed leaves it there until a ``--resume`` finishes the new run."""
    aside = progress_path(REPLACED)
    folder.remove(aside)
    folder.set_aside_output = True
    try:
        for name in sorted(entries, key=lambda name: name != STATE):  # state.json first: not finished from here on
            if name != PROGRESS_DIR:
                folder.move(name, f"{aside}/{name}")
        for name in folder.entries(PROGRESS_DIR):
            if not is_lock_name(name) and name != REPLACED:
                folder.move(progress_path(name), f"{aside}/{PROGRESS_DIR}/{name}")
    except BaseException:  # an interrupt (or a failed rename) half-way: nothing new was written yet
        move_back(folder)
        raise


def put_back(folder: OutputFolder) -> bool:
    """After a failed ``--overwrite``: delete what it wrote and restore the finished output it set aside.

    Returns whether there was one. An interrupt does not call it: the new run's shards
    are kept for ``--resume``, as the interrupt's message says."""
    if not folder.set_aside_output:
        return False
    for name in folder.entries():
        if name != PROGRESS_DIR:
            folder.remove(name)
    for name in folder.entries(PROGRESS_DIR):
        if not is_lock_name(name) and name != REPLACED:
            folder.remove(progress_path(name))
    move_back(folder)
    return True


def move_back(folder: OutputFolder) -> None:
    """Move what ``_set_aside`` moved back to its place (state.json last), then drop the empty aside folder."""
    aside = progress_path(REPLACED)
    for name in folder.entries(f"{aside}/{PROGRESS_DIR}"):
        folder.move(f"{aside}/{PROGRESS_DIR}/{name}", progress_path(name))
    for name in sorted(folder.entries(aside), key=lambda name: name == STATE):  # state.json last
        if name != PROGRESS_DIR:
            folder.move(f"{aside}/{name}", name)
    folder.remove(aside)
    folder.set_aside_output = False


def meaningful_entries(folder: OutputFolder) -> list[str]:
    """The folder's entries, less a progress folder that holds nothing but lock files (a new folder's)."""
    entries = folder.entries()
    if PROGRESS_DIR in entries and all(is_lock_name(name) for name in folder.entries(PROGRESS_DIR)):
        entries.remove(PROGRESS_DIR)
    return entries


def completed_shards(
    folder: OutputFolder, run: dict[str, Any], task: Task, previous: dict[str, Any] | None
) -> tuple[dict[int, dict[str, Any]], bool]:
    """This task's completed shards a resume keeps, by index, and whether it redoes any because the run that
    made it saw the inputs otherwise (``same_inputs_seen``)."""
    if previous is None:
        return {}, False
    difference = first_difference(without_engine(previous), without_engine(run))
    if difference:
        raise OutputError(
            f"cannot resume {folder.where()}: it was started with different settings ({difference}); "
            "rerun with the original options, or pass --overwrite to start again"
        )
    completed: dict[int, dict[str, Any]] = {}
    inputs_changed = False
    for name in folder.shard_record_names():
        if not task.owns(name):
            continue
        try:
            record = folder.read_json(progress_path(name))
        except (OSError, ValueError):
            continue
        refuse_another_run(folder.where(), record, run, "resume")
        shard = record["filename"]
        if not same_inputs_seen(folder, record):
            inputs_changed = True
            continue
        if not folder.has_file(shard):
            continue
        if "xxh3_128" not in record:  # completed by a version that recorded sha256 alone: add the other
            upgraded = with_xxh3(folder, record)
            if upgraded is not None:
                completed[int(record["index"])] = upgraded
        elif folder.sha256(shard) == record["sha256"]:
            completed[int(record["index"])] = record
    return completed, inputs_changed


def same_inputs_seen(folder: OutputFolder, record: dict[str, Any]) -> bool:
    """Whether the run that made a shard saw the inputs as this one does (a record from before it was recorded: yes).

    Not, and the run is still the same (``ownership.refuse_another_run`` passed): an input
    was touched, copied or rewritten to its size since. The end-of-run hash check
    covers only the hashes in run.json, which may be another task's new run, so
    the shard is redone rather than kept."""
    made_from = record.get("inputs_seen")
    return made_from is None or folder.seen_inputs is None or made_from == folder.seen_inputs


def with_xxh3(folder: OutputFolder, record: dict[str, Any]) -> dict[str, Any] | None:
    """A shard record from before ``xxh3_128`` was recorded, with it added and committed (so a resumed
    output's manifest is the one a fresh run writes), or None when the shard no longer hashes to it."""
    checksums = folder.read_shard_bytes(record["filename"]).checksums
    if checksums["sha256"] != record["sha256"]:
        return None
    record = {**record, "xxh3_128": checksums["xxh3_128"]}
    folder.write_shard_record(record)
    return record


def remove_stale(folder: OutputFolder, completed: dict[int, dict[str, Any]], task: Task, keep_finished: bool) -> None:
    """Delete this task's temporaries and unfinished shards; keep completed shards.

    With ``keep_finished`` (``--resume``) a finished output's manifest, ``state.json``
    and ``dataset_info.json`` stay until the run commits its own over them: a
    resume that fails (an input changed, a full disk) leaves the output as it
    was, and readers refuse the folder meanwhile because the lock is held."""
    kept = (record["filename"] for record in completed.values())
    for name in stale_entries(folder.entries(), kept, task, keep_finished):
        folder.remove(name)
    for name in stale_progress(folder.entries(PROGRESS_DIR), completed, task):
        folder.remove(progress_path(name))


def remove_unfinished_shards(folder: OutputFolder, task: Task) -> None:
    """After a failed run: delete this task's shard temporaries (the final names are never touched)."""
    for name in folder.entries():
        if is_shard_filename(name) and is_temporary(name) and task.owns(name):
            folder.remove(name)
