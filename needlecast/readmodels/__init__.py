"""Read models: what a face (console, API, CLI) shows, built once from the library (the faces import these
and actions, nothing else)."""
