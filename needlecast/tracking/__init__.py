"""Tracking: what SendGrid reports back. The signed event webhook (`webhook.py`) and the events' one
normalised shape (`events.py`), settled into the ledger and suppressions.

It reads `audience` (suppression, addresses) and never the other way round; what a recipient changes from the
pages an email links to (unsubscribe, topics, pause) is `audience.recipient_changes`, served by
`web.recipient_pages`.
"""
