"""`needlecast doctor` against a local DNS stub (dnslib on 127.0.0.1) and a loopback web server: each item is
"ok" when it is there, "missing" with a fix when it is not, and "unchecked" (cannot resolve) without DNS."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.resolver
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dnslib import CNAME, QTYPE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer
from typer.testing import CliRunner

from needlecast import doctor
from needlecast.cli import app
from needlecast.config import Workspace, open_workspace
from needlecast.devtools.sendgrid_sink import SendGridSink
from tests.waiting import serving

DOMAIN = "lumen-clinic.example.com"  # the sample sender's domain
GOOD_ZONE = {
    ("sendgrid.net", "TXT"): [TXT("v=spf1 ip4:167.89.0.0/17 ~all")],  # the public DNS is there
    (DOMAIN, "TXT"): [TXT("v=spf1 include:sendgrid.net ~all")],
    (f"s1._domainkey.{DOMAIN}", "CNAME"): [CNAME("s1.domainkey.u1.wl.sendgrid.net")],
    (f"s2._domainkey.{DOMAIN}", "CNAME"): [CNAME("s2.domainkey.u1.wl.sendgrid.net")],
    (f"_dmarc.{DOMAIN}", "TXT"): [TXT(f"v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}")],
}


class _Zone(BaseResolver):
    """Answers from a dict of (name, type) -> records; NXDOMAIN for a name it does not hold."""

    def __init__(self, zone: dict[tuple[str, str], list[object]]) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        for rdata in self.zone.get((name, kind), []):
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, kind), rdata=rdata, ttl=60))
        if not any(n == name for n, _ in self.zone):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


def _resolver(port: int) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 1.0
    return resolver


@pytest.fixture()
def dns_stub() -> Iterator[tuple[dns.resolver.Resolver, dict[tuple[str, str], list[object]]]]:
    """A DNS server on 127.0.0.1 serving a copy of GOOD_ZONE (edit the dict to take records away)."""
    zone = dict(GOOD_ZONE)
    quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)  # it logs to stdout by default
    server = DNSServer(_Zone(zone), port=0, address="127.0.0.1", logger=quiet)
    with serving(server.server):
        yield _resolver(server.server.server_address[1]), zone


@pytest.fixture(autouse=True)
def sendgrid(monkeypatch: pytest.MonkeyPatch) -> Iterator[SendGridSink]:
    """The loopback SendGrid (`[delivery] api_host`, through NEEDLECAST_SENDGRID_HOST) whose Sender
    Authentication shows the sample sender's domain as authenticated and validated."""
    with SendGridSink(api_key="SG.test-key") as sink:
        sink.state.authenticated_domains.append({"id": 1, "domain": DOMAIN, "subdomain": "em1", "valid": True})
        monkeypatch.setenv("NEEDLECAST_SENDGRID_HOST", sink.url)
        yield sink


@pytest.fixture()
def healthz() -> Iterator[str]:
    """A loopback web server whose /nc/healthz answers 200 (as `needlecast web` behind /nc would)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/nc/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}/nc"


def _webhook_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return base64.b64encode(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()


def _ready(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, base_url: str) -> Workspace:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("NEEDLECAST_SECRET", "s" * 40)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", _webhook_key())
    text = workspace.config_path.read_text().replace("https://lumen-clinic.example.com/nc", base_url)
    workspace.config_path.write_text(text)
    return open_workspace(workspace.root)


def _statuses(checks: list[doctor.Check]) -> dict[str, str]:
    return {c.item: c.status for c in checks}


def test_a_sender_with_everything_in_place_is_all_ok(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, dns_stub: tuple[dns.resolver.Resolver, dict], healthz: str
) -> None:
    checks = doctor.diagnose(_ready(workspace, monkeypatch, healthz), resolver=dns_stub[0])
    assert [c.item for c in checks] == [
        "sender address",
        "SendGrid API key",
        "link-signing secret",
        "webhook verification key",
        "SPF",
        "DKIM",
        "DMARC",
        "sender verified in SendGrid",
        "unsubscribe host",
    ]
    assert set(_statuses(checks).values()) == {"ok"}, checks


def test_the_sender_is_verified_only_when_sendgrid_shows_it_or_its_domain(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    healthz: str,
    sendgrid: SendGridSink,
    dns_stub: tuple[dns.resolver.Resolver, dict],
) -> None:
    ws = _ready(workspace, monkeypatch, healthz)
    sender = ws.settings.clinic.sender_email

    def verified() -> doctor.Check:
        return {c.item: c for c in doctor.diagnose(ws, resolver=dns_stub[0])}["sender verified in SendGrid"]

    assert verified().status == "ok" and DOMAIN in verified().detail  # the authenticated domain
    sendgrid.state.authenticated_domains[0]["valid"] = False  # authenticated, but its records never validated
    missing = verified()
    assert missing.status == "missing" and "Sender Authentication" in missing.fix and DOMAIN in missing.fix
    sendgrid.state.verified_senders.append({"id": 7, "from_email": sender.upper(), "verified": True})
    assert verified().status == "ok" and "single sender" in verified().detail
    sendgrid.state.sender_auth_status = 403  # a key with the 'Mail Send' permission alone
    forbidden = verified()
    assert forbidden.status == "unchecked" and "may not read" in forbidden.detail and forbidden.fix
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.another-key")  # SendGrid refuses the key
    assert verified().status == "unchecked"
    with socket.socket() as sock:  # no SendGrid at all (no network)
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("NEEDLECAST_SENDGRID_HOST", f"http://127.0.0.1:{sock.getsockname()[1]}")
    ws = open_workspace(ws.root)
    unreachable = verified()
    assert unreachable.status == "unchecked" and "cannot reach SendGrid" in unreachable.detail


@pytest.mark.parametrize(
    ("item", "remove"),
    [
        ("SPF", (DOMAIN, "TXT")),
        ("DKIM", (f"s2._domainkey.{DOMAIN}", "CNAME")),
        ("DMARC", (f"_dmarc.{DOMAIN}", "TXT")),
    ],
)
def test_a_missing_dns_record_is_reported_with_the_record_to_publish(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    dns_stub: tuple[dns.resolver.Resolver, dict],
    healthz: str,
    item: str,
    remove: tuple[str, str],
) -> None:
    resolver, zone = dns_stub
    del zone[remove]
    checks = {c.item: c for c in doctor.diagnose(_ready(workspace, monkeypatch, healthz), resolver=resolver)}
    assert checks[item].status == "missing" and DOMAIN in checks[item].fix
    assert [i for i, c in checks.items() if c.status != "ok"] == [item]


def test_an_spf_record_without_sendgrid_is_missing(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, dns_stub: tuple[dns.resolver.Resolver, dict], healthz: str
) -> None:
    resolver, zone = dns_stub
    zone[(DOMAIN, "TXT")] = [TXT("v=spf1 include:_spf.google.com ~all")]
    spf = doctor.diagnose(_ready(workspace, monkeypatch, healthz), resolver=resolver)[4]
    assert spf.status == "missing" and "include:sendgrid.net" in spf.fix


def test_without_a_dns_server_the_records_are_unchecked_never_ok(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, healthz: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a port nobody answers on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        checks = doctor.diagnose(_ready(workspace, monkeypatch, healthz), resolver=_resolver(port))
    for check in checks[4:7]:
        assert check.status == "unchecked" and "cannot resolve" in check.detail


def test_a_dns_that_does_not_see_the_internet_is_cannot_resolve_not_missing_records(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, dns_stub: tuple[dns.resolver.Resolver, dict], healthz: str
) -> None:
    resolver, zone = dns_stub
    del zone[("sendgrid.net", "TXT")]  # like a sandbox resolver that says "no such name" to everything
    checks = doctor.diagnose(_ready(workspace, monkeypatch, healthz), resolver=resolver)
    assert [(c.item, c.status) for c in checks[4:7]] == [
        ("SPF", "unchecked"),
        ("DKIM", "unchecked"),
        ("DMARC", "unchecked"),
    ]
    assert all("cannot resolve" in c.detail for c in checks[4:7])


def test_missing_secrets_and_an_unreachable_unsubscribe_host_each_say_what_to_do(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, dns_stub: tuple[dns.resolver.Resolver, dict]
) -> None:
    for name in ("SENDGRID_API_KEY", "NEEDLECAST_SECRET", "SENDGRID_WEBHOOK_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sock:  # a port with no web server: held (bound, never listening) while the doctor
        sock.bind(("127.0.0.1", 0))  # calls, so that no other process (a parallel test) can take it meanwhile
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        workspace.config_path.write_text(
            workspace.config_path.read_text().replace("https://lumen-clinic.example.com/nc", url)
        )
        checks = {c.item: c for c in doctor.diagnose(open_workspace(workspace.root), resolver=dns_stub[0])}
    for item in ("SendGrid API key", "link-signing secret", "webhook verification key", "unsubscribe host"):
        assert checks[item].status == "missing" and checks[item].fix, item
    assert "SENDGRID_API_KEY" in checks["SendGrid API key"].fix
    assert "Signed Event Webhook" in checks["webhook verification key"].fix
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "not-a-key")
    assert doctor.diagnose(open_workspace(workspace.root), resolver=dns_stub[0])[3].status == "missing"


def test_the_placeholder_sender_is_missing(tmp_path: Path, dns_stub: tuple[dns.resolver.Resolver, dict]) -> None:
    assert CliRunner().invoke(app, ["init", str(tmp_path / "fresh")]).exit_code == 0
    checks = doctor.diagnose(open_workspace(tmp_path / "fresh"), resolver=dns_stub[0])
    assert checks[0].status == "missing" and "sender_email" in checks[0].fix
    assert checks[-1].status == "missing"  # the placeholder tracking address


def test_doctor_command_prints_each_item_and_exits_1_when_something_is_missing(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch, dns_stub: tuple[dns.resolver.Resolver, dict], healthz: str
) -> None:
    resolver = dns_stub[0]
    monkeypatch.setattr(doctor.dns.resolver, "Resolver", lambda: resolver)  # the system resolver, here the stub
    ws = _ready(open_workspace(workspace_dir), monkeypatch, healthz)
    runner = CliRunner()
    result = runner.invoke(app, ["--workspace", str(ws.root), "doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stdout
    assert "DMARC" in result.stdout and "missing" not in result.stdout and "SG.test-key" not in result.stdout
    monkeypatch.delenv("SENDGRID_API_KEY")
    result = runner.invoke(app, ["--workspace", str(ws.root), "doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "missing" in result.stdout and "SENDGRID_API_KEY" in result.stdout
    result = runner.invoke(app, ["--workspace", str(ws.root), "doctor", "--format", "json"])
    items = {c["item"]: c for c in json.loads(result.stdout)}
    assert result.exit_code == 1 and items["SendGrid API key"]["status"] == "missing" and items["SPF"]["status"] == "ok"
