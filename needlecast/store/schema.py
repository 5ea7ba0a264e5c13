"""Table definitions (SQLAlchemy Core). Alembic migrations in `needlecast/store/migrations` create them.

Privacy: the only personal data is in `contacts` (address, names, concerns) and `consent_events`.
Suppressions hold a keyed hash of the address, never the address, so an erased person stays suppressed
without their data being kept.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from needlecast.store.types import UtcDateTime as DateTime

metadata = MetaData()

# Key/value facts about the store itself (e.g. the key of the address hash).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("email_hash", String(64), nullable=False, unique=True),
    Column("first_name", String(200), nullable=False, default=""),
    Column("last_name", String(200), nullable=False, default=""),
    # Canonical concerns, ";"-joined in the order given (the first is the primary concern).
    Column("concerns", String(200), nullable=False, default=""),
    Column("time_zone", String(64), nullable=False, default=""),
    Column("locale", String(16), nullable=False, default=""),
    Column("tags", String(500), nullable=False, default=""),
    # active: may be mailed when consent allows; pending: double opt-in not yet confirmed.
    Column("status", String(16), nullable=False, default="active"),
    # Current consent, kept in step with the append-only consent_events history.
    Column("marketing_consent", Boolean, nullable=False, default=False),
    Column("concern_consent", Boolean, nullable=False, default=False),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("signed_up_at", DateTime(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    Index("ix_contacts_signed_up", "signed_up_at", "id"),  # the console's contact list, newest first (migration 0016)
    Index("ix_contacts_updated_at", "updated_at"),  # the audience's fingerprint: its latest change (migration 0019)
    Index("ix_contacts_time_zone", "time_zone"),  # the audience's zones, a seek per zone (migration 0021)
    # An id is never handed to another person (migration 0006): signed links and ledger rows point at it.
    sqlite_autoincrement=True,
)

# The ids of erased contacts: their signed links stay dead whatever the database does with ids.
erased_contacts = Table(
    "erased_contacts",
    metadata,
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("erased_at", DateTime(), nullable=False),
)

contact_lists = Table(
    "contact_lists",
    metadata,
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("list_name", String(100), primary_key=True),
    Index("ix_contact_lists_list", "list_name"),
)

consent_events = Table(
    "consent_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, index=True),
    Column("purpose", String(16), nullable=False),  # marketing | concern
    Column("action", String(16), nullable=False),  # granted | withdrawn | pending | confirmed
    Column("source", String(200), nullable=False),
    Column("wording_version", String(100), nullable=False, default=""),
    Column("recorded_at", DateTime(), nullable=False),
    # The keyed hash of the network address a consent came from (a signup form); "" otherwise.
    Column("address_hash", String(64), nullable=False, server_default=""),
    Index("ix_consent_events_source", "source", "contact_id"),  # the contact list's sources (migration 0016)
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("reason", String(32), nullable=False),  # unsubscribed | hard_bounce | complaint | manual | erased
    Column("source", String(200), nullable=False, default=""),
    Column("created_at", DateTime(), nullable=False),
)

imports = Table(
    "imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_name", String(300), nullable=False),
    Column("list_name", String(100), nullable=False, default=""),
    Column("status", String(16), nullable=False),  # completed | failed
    Column("rows_read", Integer, nullable=False, default=0),
    Column("inserted", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("started_at", DateTime(), nullable=False),
    Column("finished_at", DateTime(), nullable=True),
)

# The delivery ledger (DESIGN.md invariant 1): one row per (campaign, step, contact), ever. Rows are never
# deleted, so a delivery id (which travels in SendGrid's custom_args) is never given to another email; an
# erasure unlinks the erased person's rows instead (`contact_id` becomes the row's own id, negated).
# queued -> sending -> sent | failed | unknown; also skipped (suppressed or capped at dispatch, with the
# reason in `error`) and cancelled. `id` is the delivery id that travels in SendGrid custom_args.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("campaign_id", String(64), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("segment", String(100), nullable=False),
    Column("variant", String(32), nullable=False),
    Column("arm", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("due_at", DateTime(), nullable=False),
    Column("claimed_at", DateTime(), nullable=True),
    Column("claim_token", String(40), nullable=False),
    Column("sent_at", DateTime(), nullable=True),
    Column("message_id", String(100), nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    # What the provider reported after accepting it: delivered | bounced | dropped | deferred ('' until then).
    Column("outcome", String(16), nullable=False, server_default=""),
    Column("outcome_at", DateTime(), nullable=True),
    # Send-time optimisation: the rule that chose the moment ("holdout", "own history"...; '' when not optimised).
    Column("timing", String(24), nullable=False, server_default=""),
    # The request an `unknown` row was part of ('' otherwise): one event for any of its rows settles them all.
    Column("request_id", String(32), nullable=False, server_default=""),
    UniqueConstraint("campaign_id", "step_id", "contact_id", name="uq_deliveries_campaign_step_contact"),
    # No index holds a column that a send changes (status, claim_token, sent_at...): on PostgreSQL, with the
    # table's fillfactor at 50 (migration 0005), claiming and marking a row are HOT updates that write no
    # index entry. What is queued is found through `delivery_queue` instead.
    # The deliverability guard's window, newest delivery id first (migration 0015, `store.guardwindow`).
    Index("ix_deliveries_campaign_window", "campaign_id", "id"),
    # A person's emails: the bookers' emails when a report attributes bookings (migration 0022).
    Index("ix_deliveries_contact", "contact_id"),
)

# The queue of the ledger: every `queued` row of `deliveries` is listed in exactly one entry, and no other
# row is. An entry lists up to QUEUE_ENTRY_SIZE rows of one campaign due at the same time, so claiming a
# round of 4,000 rows takes four entries, not 4,000 index entries (see `needlecast/ledger.py`).
delivery_queue = Table(
    "delivery_queue",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("campaign_id", String(64), nullable=False),
    Column("due_at", DateTime(), nullable=False),
    Column("size", Integer, nullable=False),
    # The delivery ids: an array on PostgreSQL, a JSON array as text on SQLite (`store.driver.ids_value`).
    Column("delivery_ids", Text().with_variant(ARRAY(BigInteger), "postgresql"), nullable=False),
    Index("ix_delivery_queue_due", "campaign_id", "due_at"),
)

# Sending processes (workers, schedulers, `needlecast send`) and their heartbeats, in the database clock's epoch
# seconds: one silent past `[delivery] lease_seconds` is dead, and its rows are recovered (migration 0010).
senders = Table(
    "senders",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("kind", String(16), nullable=False),  # worker | scheduler | send
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # alive | stopped | dead
    Column("leader", Boolean, nullable=False, server_default=false()),  # a scheduler holding the leader lock
    Column("started_at", Float, nullable=False),
    Column("beat_at", Float, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

# A request's intent, written before it is posted and removed once its outcome is recorded: its claim, its
# rows (JSON array of delivery ids). state: posting | unknown (may have been posted; its rows are `unknown`) |
# accepted (settled by an event) | lost (proved never accepted; its rows were queued again).
delivery_requests = Table(
    "delivery_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("campaign_id", String(64), nullable=False),
    Column("sender_id", String(16), nullable=False),
    Column("claim_token", String(40), nullable=False),
    Column("size", Integer, nullable=False),
    Column("delivery_ids", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("settled_at", Float, nullable=True),
)

# Fleet-wide rate limits: the next free moment (database clock, epoch seconds) for a request and for an email.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_request", Float, nullable=False),
    Column("next_email", Float, nullable=False),
)

# A/B winner tests: the winning arm of a step, decided once (migration 0008).
ab_decisions = Table(
    "ab_decisions",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("step_id", String(64), primary_key=True),
    Column("winner", String(8), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("metric", String(16), nullable=False),
    Column("figures", Text, nullable=False),  # JSON: per arm delivered and successes, and the p value
    Column("decided_at", DateTime(), nullable=False),
)

# Per-campaign state the scheduler keeps: active / paused / cancelled, and the failure streak.
campaign_state = Table(
    "campaign_state",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime(), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("consecutive_failures", Integer, nullable=False),
    Column("note", Text, nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    # The deliverability guard (migration 0013, `campaign.send.guardrails`): the threshold that paused the
    # campaign by itself ('' when it did not), its figures (JSON), and the delivery id its window starts after.
    Column("guard_threshold", String(32), nullable=False, server_default=""),
    Column("guard_figures", Text, nullable=False, server_default=""),
    Column("guard_floor", BigInteger().with_variant(Integer, "sqlite"), nullable=False, server_default="0"),
)

# Sequence enrolments: who walks through a nurture sequence, from when, and why they left.
enrolments = Table(
    "enrolments",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("enrolled_at", DateTime(), nullable=False),
    Column("exited_at", DateTime(), nullable=True),
    Column("exit_reason", String(64), nullable=False),
)

# Webhook events that failed validation (a field of the wrong type, a NUL, NaN...), kept raw as escaped JSON
# text with the reason, so that nothing a provider sent is lost without a trace.
rejected_events = Table(
    "rejected_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("received_at", DateTime(), nullable=False),
    Column("reason", String(300), nullable=False),
    Column("raw", Text, nullable=False),
)

# ESP events (webhooks), stored once per provider event id; the raw event is kept beside the normalised one.
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("provider_event_id", String(100), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("delivery_id", BigInteger().with_variant(Integer, "sqlite"), nullable=True),
    Column("campaign_id", String(64), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("email_hash", String(64), nullable=False),
    Column("occurred_at", DateTime(), nullable=False),
    Column("received_at", DateTime(), nullable=False),
    Column("detail", Text, nullable=False),
    Column("raw", JSON, nullable=False),
    # The bounces, complaints and drops alone, by delivery (migration 0015): the guard's window reads these.
    Index(
        "ix_events_bad",
        "delivery_id",
        sqlite_where=text("kind IN ('bounced', 'complained', 'dropped')"),
        postgresql_where=text("kind IN ('bounced', 'complained', 'dropped')"),
    ),
    Index("ix_events_email_hash_at", "email_hash", "occurred_at"),  # a person's last activity (migration 0016)
    # The reports settle each email from these alone (`store/reports.py`, migration 0017).
    Index("ix_events_delivery_kind", "delivery_id", "kind", "occurred_at"),
    Index(
        "ix_events_human_opens",
        "delivery_id",
        "occurred_at",
        sqlite_where=text("kind = 'opened' AND detail <> 'machine'"),
        postgresql_where=text("kind = 'opened' AND detail <> 'machine'"),
    ),
)

# Each email's events summed up (migration 0020): written by triggers on `events`, in the transaction that
# writes the events, whoever writes them; never written by needlecast's code. What the reports count from
# (`store/reports.py`): one row per ledger row with events, the same whatever order its events came in.
email_summaries = Table(
    "email_summaries",
    metadata,
    Column("delivery_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("seen", Integer, nullable=False),  # a bit per kind of event it had (`store.reports.KIND_BITS`)
    Column("delivered_at", DateTime(), nullable=True),  # its first delivered event
    Column("human_open_at", DateTime(), nullable=True),  # its last open not marked a machine's
    Column("opens", BigInteger, nullable=False),  # its open events
    Column("clicks", BigInteger, nullable=False),  # its click events
)


# Console accounts: an argon2 password hash, a role (admin, marketer, reviewer, analyst).
users = Table(
    "users",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    Column("last_login_at", DateTime(), nullable=True),
    sqlite_autoincrement=True,
)

# Server-side sessions, by the SHA-256 of the opaque id the cookie carries (a stolen database holds no
# usable session), with the session's CSRF token.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("last_seen_at", DateTime(), nullable=False),
    Column("expires_at", DateTime(), nullable=False),
)

# The log-in throttle's counters, by the keyed hash of an account, a network address or the pair (so no
# address and no account name is stored): attempts in the window that began at `since`, the account's pace
# (`next_at`, `pause`), and for a pair its last successful log-in (`trusted_at`). Epoch seconds.
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("since", Float, nullable=False),
    Column("next_at", Float, nullable=False, server_default="0"),
    Column("pause", Float, nullable=False, server_default="0"),
    Column("trusted_at", Float, nullable=True),
)

# Every change, append-only: who (actor_kind user / api_key / cli / system, and its name), what, on what.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(), nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_audit_log_at", "at"),
)

# API keys by the SHA-256 of the key (the key itself is shown once, when it is made).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(500), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("last_used_at", DateTime(), nullable=True),
    Column("revoked_at", DateTime(), nullable=True),
    sqlite_autoincrement=True,
)

# The answer to an API write made with an Idempotency-Key: the same key and body get it again.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("actor", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(), nullable=False),
)

# What the clinic's systems report: bookings, attendances, purchases, custom events; once per source id.
contact_events = Table(
    "contact_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source_id", String(200), nullable=False, unique=True),
    Column("email_hash", String(64), nullable=False, index=True),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), nullable=True, index=True),
    Column("type", String(64), nullable=False),
    Column("occurred_at", DateTime(), nullable=False),
    Column("value", Numeric(14, 2), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("source", String(200), nullable=False),
    Column("received_at", DateTime(), nullable=False),
    # From a booking system (migration 0011): the treatment the appointment is for ("" when its type is not
    # in [bookings.treatments]) and when the appointment starts.
    Column("treatment", String(64), nullable=False, default=""),
    Column("appointment_at", DateTime(), nullable=True),
    Index("ix_contact_events_type_at", "type", "occurred_at"),
)

# What the signup form received, as it came, whatever the address (new, known or suppressed): the scheduler's
# `confirmations` job takes each row once, deletes it and stores the signup request (`audience.signup`).
signup_intake = Table(
    "signup_intake",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("first_name", String(200), nullable=False),
    Column("concerns", String(200), nullable=False),
    Column("concern_consent", Boolean, nullable=False),
    Column("form", String(40), nullable=False),
    Column("address_hash", String(64), nullable=False),
    Column("created_at", DateTime(), nullable=False),
)

# Each appointment a booking system told us about, as it stands now (migration 0012): whether it is still to
# come (`open`) and when it starts. "A future appointment exists" is an open row with starts_at ahead; the
# contact's attribute `next_appointment_at` mirrors the earliest. `last_event_at` keeps a late, older
# delivery from undoing a newer change.
appointments = Table(
    "appointments",
    metadata,
    Column("appointment", String(200), primary_key=True),  # "<provider>:<the system's id>"
    Column("email_hash", String(64), nullable=False, index=True),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), nullable=True, index=True),
    Column("treatment", String(64), nullable=False),
    Column("appointment_type", String(200), nullable=False),
    Column("starts_at", DateTime(), nullable=True),
    Column("open", Boolean, nullable=False),
    Column("last_event_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
)

# What a signup form asked for (name, concerns, the two consents with their wording versions, the form, the
# request's address hashed), applied when the confirmation link it emailed is followed.
signup_requests = Table(
    "signup_requests",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, index=True),
    Column("first_name", String(200), nullable=False),
    Column("concerns", String(200), nullable=False),
    Column("marketing", Boolean, nullable=False),
    Column("concern_consent", Boolean, nullable=False),
    Column("marketing_wording", String(100), nullable=False),
    Column("concern_wording", String(100), nullable=False),
    Column("source", String(200), nullable=False),
    Column("address_hash", String(64), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("confirmed_at", DateTime(), nullable=True),
    # The confirmation email: '' (none to send), queued, sending, sent or failed; sent by the scheduler's
    # `confirmations` job, never in the web request. `confirmation_at`: when it was claimed or settled.
    Column("confirmation", String(16), nullable=False, server_default=""),
    Column("confirmation_at", DateTime(), nullable=True),
    Index("ix_signup_requests_confirmation", "confirmation"),
)

# Journeys (migration 0014): each person's place in each journey, one row per entry (`needlecast.campaign.journeys`).
# state: active (at `node` since `since`, to be advanced at `due_at`) | done (reached an exit) | exited (left
# early: `reason`) | converted (reached the journey's goal). At most one active row per (journey, contact).
journey_positions = Table(
    "journey_positions",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("entry", Integer, primary_key=True, autoincrement=False),
    Column("node", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("since", DateTime(), nullable=False),
    Column("due_at", DateTime(), nullable=False),
    Column("entered_at", DateTime(), nullable=False),
    Column("trigger_at", DateTime(), nullable=True),  # the event, signup or date that started this entry
    Column("left_at", DateTime(), nullable=True),
    Column("reason", String(120), nullable=False, server_default=""),
    # The choices this entry made, in order (migration 0018): `node>target;` per branch, split or wait-until
    # passed (`store.journeys.move`'s `choices`); what the journey's page and report count paths from.
    Column("path", Text, nullable=False, server_default=""),
    Index("ix_journey_positions_due", "campaign_id", "state", "due_at"),
    Index(
        "uq_journey_positions_active",
        "campaign_id",
        "contact_id",
        unique=True,
        sqlite_where=text("state = 'active'"),
        postgresql_where=text("state = 'active'"),
    ),
)

# Every saved version of a journey's file, with who saved it and what the save did to the people waiting.
journey_versions = Table(
    "journey_versions",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(32), nullable=False),
    Column("saved_at", DateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("moves", Text, nullable=False),  # JSON: node -> where its waiting people went
    Column("source", Text, nullable=False),
)
