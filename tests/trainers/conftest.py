"""The files that run inside the trainers' venvs import the trainers: pytest's doctest collection must not import them here."""

collect_ignore = ["goldfish_litgpt.py", "goldfish_swift.py", "goldfish_torchtune.py", "record.py"]
