"""Read models: what a face shows, built once for all three faces (console, API, command line).

A read model is a function that reads the store and the workspace and returns plain values shaped as a page,
an answer or a table shows them (a segment's size with its variants and exclusions, a campaign's overview and
outcome, a contact's profile). It changes nothing and audits nothing (changes are `needlecast.actions`); it
decides every figure's definition and order, so the faces cannot disagree on them. A face formats what it
gets (HTML, JSON, a terminal table) and adds nothing to the figures.
"""
