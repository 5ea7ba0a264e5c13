"""Audiences: import (CSV/XLSX), consent, suppression, segments (pandas), events in, signup and confirmation,
and what a recipient changes about themselves (`recipient_changes`: unsubscribe, topics, pause).

Address validation and hashing are `needlecast.addresses`, below this package, since accounts, bookings and
tracking use them too.
"""
