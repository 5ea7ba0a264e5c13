"""The one way any face (console, API, command line) changes anything: checked, done, audited.

Contract (every action module): each function takes the acting `Actor` (a console user, an API key, or the
command line's local operator `cli:<os user>`), raises `PermissionDenied` unless the actor may do it
(`accounts.roles.require`), does the change through the library, and writes one audit entry in the same
transaction (or, for file changes, right after the file is written).
"""
