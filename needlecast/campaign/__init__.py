"""Campaigns by stage: `definition` (files, editor, sign-off), `plan` (rules, planner) and `send` (dispatcher).

Beside them: the context a job loads once (`context.py`) and the faces' read models (`overview.py`, `outcome.py`).
"""
