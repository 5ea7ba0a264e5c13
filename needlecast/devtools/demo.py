"""`needlecast demo`: every stage that exists, on the workspace's embedded defaults, with no API key."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from needlecast.accounts.roles import SYSTEM, Actor
from needlecast.actions.audience import import_audience
from needlecast.audience.membership import evaluate, load_frame
from needlecast.audience.segments import load_segments
from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.devtools.demo_campaigns import run_campaign_stage
from needlecast.lint import lint_workspace
from needlecast.store.engine import make_engine, open_store, upgrade
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import email_templates
from needlecast.templating.preview import write_preview


def run_demo(workspace: Workspace, console: Console, *, with_events: bool = False, actor: Actor = SYSTEM) -> int:
    """Run the demo; return the exit status (0 when every stage completed). The sample import is audited
    as `actor`'s (`needlecast demo`: the command line's); the sends are the scheduler's jobs."""
    console.rule("1. Content: the article as concern-tagged sections")
    vocabulary = load_vocabulary_for(workspace)
    article = load_article(workspace, vocabulary)
    table = Table()
    for column in ("section", "concerns"):
        table.add_column(column)
    for section in article.sections:
        table.add_row(section.title, ", ".join(section.concerns))
    console.print(table)

    console.rule("2. Templates: every email for every concern, previewed")
    out = workspace.root / "previews"
    count = 0
    for name in email_templates(workspace.templates_dir):
        for concern in variant_concerns(vocabulary):
            write_preview(workspace, name, concern, "Ana", out)
            count += 1
    console.print(f"{count} previews (HTML, text, .eml) in {out}")

    console.rule("3. Lint: claims and compliance")
    findings = lint_workspace(workspace)
    by_rule = Counter((f.severity, f.rule) for f in findings)
    for (severity, rule), n in sorted(by_rule.items()):
        console.print(f"  {severity:7} {rule:28} {n}")
    console.print("Run `needlecast lint` for every finding with its file, line and suggested fix.")

    console.rule("4. Audience: the sample leads imported, segmented by concern")
    # The demo's own database follows the code: migrate it in place (`needlecast db upgrade` elsewhere).
    upgrade(make_engine(workspace.database_url))
    engine = open_store(workspace.database_url)
    summary = import_audience(
        engine, workspace, actor, workspace.audiences_dir / "sample.csv", list_name="sample-leads"
    )
    console.print(
        f"read {summary.read}: inserted {summary.inserted}, updated {summary.updated}, "
        f"duplicates {summary.duplicates}, rejected {summary.rejected}"
        + (f" (see {summary.rejects_path})" if summary.rejects_path else "")
    )
    segments = load_segments(workspace.audiences_dir / "segments.yaml", vocabulary.names)
    with engine.connect() as conn:
        frame = load_frame(conn)
    table = Table()
    for column in ("segment", "members", "excluded"):
        table.add_column(column)
    now = datetime.now(UTC)
    for segment in segments.values():
        result = evaluate(segment, frame, now)
        table.add_row(
            segment.name, str(result.size), ", ".join(f"{k}: {v}" for k, v in sorted(result.excluded.items())) or "-"
        )
    console.print(table)

    console.rule("5. Campaigns: the scheduler sends the broadcast and the nurture sequence's day 0")
    status = run_campaign_stage(workspace, engine, console)
    if status or not with_events:
        return status
    console.rule("6. Events and report: simulated SendGrid events through the signed webhook, bookings through the API")
    return run_events_stage(workspace, engine, console)


def run_events_stage(workspace: Workspace, engine: Engine, console: Console) -> int:
    """Post simulated SendGrid events through the real webhook (signed with a key made for the demo), and
    simulated bookings through the API (with a key made for the demo), then report."""
    from needlecast.devtools.events import generate_key
    from needlecast.devtools.scoped_env import environment

    key, public = generate_key()
    with environment(SENDGRID_WEBHOOK_PUBLIC_KEY=public):
        return _events_stage(workspace, engine, console, key)


def _events_stage(workspace: Workspace, engine: Engine, console: Console, key: ec.EllipticCurvePrivateKey) -> int:
    from needlecast.accounts.roles import cli_actor
    from needlecast.actions.keys import create_key
    from needlecast.config import open_workspace
    from needlecast.devtools.events import post_events, post_signed, simulate, simulate_bookings
    from needlecast.reports import load_report
    from needlecast.statistics.attribution import LAST_CLICK, LAST_DELIVERED
    from needlecast.web.local import serving

    workspace = open_workspace(workspace.root)
    events = simulate(engine, workspace.settings)
    bookings = simulate_bookings(events)
    api_key = create_key(engine, cli_actor(), "demo: simulated bookings", ["events:write"])
    with serving(workspace, engine) as url:
        stored = post_signed(f"{url}/webhooks/sendgrid", events, key)
        booked = post_events(f"{url}/api/v1/events", bookings, api_key)
    console.print(f"{len(events)} events posted, {stored} new (the rest were already stored)")
    console.print(f"{len(bookings)} simulated bookings posted to the API, {booked} new")
    report = load_report(
        engine, attribution=workspace.settings.attribution, time_zone=workspace.settings.clinic.time_zone
    )
    table = Table(title="send report (needlecast report --format html --out report.html for charts)")
    columns = ("campaign", "step", "variant", "arm", "sent", "delivered", "opened", "clicked", "booked", "open rate")
    for column in columns:
        table.add_column(column)
    for row in report.funnel.itertuples(index=False):
        rate = "-" if row.opened_rate != row.opened_rate else f"{row.opened_rate:.0%}"
        table.add_row(
            row.campaign_id,
            row.step_id,
            row.variant,
            row.arm or "-",
            str(row.sent),
            str(row.delivered),
            str(row.opened),
            str(row.clicked),
            str(row.conversions),
            rate,
        )
    console.print(table)
    rules = Counter(report.conversions["rule"]) if not report.conversions.empty else Counter()
    value = report.conversions["value"].dropna().astype(float).sum() if not report.conversions.empty else 0.0
    console.print(
        f"bookings: {sum(rules.values())}, credited by last click {rules[LAST_CLICK]}, by last delivered "
        f"{rules[LAST_DELIVERED]}, not credited {rules['none']}; value GBP {value:,.2f}",
        highlight=False,
    )
    for row in report.health.itertuples(index=False):
        console.print(
            f"health {row.campaign_id}: complaints {row.complaint_rate:.2%}, bounces {row.bounce_rate:.2%}: {row.flag}",
            highlight=False,
        )
    return 0
