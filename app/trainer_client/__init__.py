"""The app's one client of the trainer (`python -m trainer ...`).

Everything the app knows about the trainer's outside interface lives here: the command lines
(commands), starting and following processes (processes), reading run directories (rundir),
and the short one-shot calls whose answers the app shows or uses (calls: info, generate,
import-pkl). The app never imports `trainer`; it runs it.
"""
