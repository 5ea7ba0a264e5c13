"""Bookings from the clinic's booking system: signed webhooks (Calendly, Acuity, a generic JSON system) turned
into contact events and a per-person record of the next appointment (see `needlecast.bookings.record`)."""
