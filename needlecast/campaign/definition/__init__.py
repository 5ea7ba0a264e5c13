"""A campaign's definition: its file's model and loader, the editor, drafts, sign-off and the gate.

Nothing here plans or sends; `campaign.plan` and `campaign.send` read what these modules load.
"""
