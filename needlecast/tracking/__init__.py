"""Tracking: the SendGrid event webhook, unsubscribe and preference pages, double opt-in confirmation."""
