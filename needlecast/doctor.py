"""`needlecast doctor`: what a sender needs before real sending, whether each is there, and the fix.

Contract: `diagnose(workspace, resolver=None, http=None)` returns one `Check` per item, in this order: the
sender address, the SendGrid API key, the link-signing secret, the Event Webhook's verification key, the
sending domain's SPF, DKIM and DMARC records, the sender verified in SendGrid, and the unsubscribe host.
Each `Check` has a status:
- "ok": it is there;
- "missing": it is not, or it is wrong (`fix` says what to do, in words a clinic's admin understands);
- "unchecked": it could not be checked here (no network, a DNS server that does not answer): never "ok".
DNS is read through the system's resolver (dnspython; tests pass their own `resolver`); a name that does not
exist or has no such record is "missing"; a resolver that cannot answer, or that does not see the public DNS
(SendGrid's own `sendgrid.net` SPF record is not found), is "unchecked" ("cannot resolve").
The sender is verified when SendGrid's Sender Authentication (read with the API key from `[delivery]
api_host`: `GET /v3/verified_senders`, `GET /v3/whitelabel/domains`) lists the address as a verified single
sender, or its domain (or a parent domain) as an authenticated domain that SendGrid validated; "unchecked"
when SendGrid cannot be asked (no key, no network, a key without the permission to read it).
The unsubscribe host is `[tracking] public_base_url`, whose `/healthz` must answer 200. Nothing is changed
and no secret's value is ever shown.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

import dns.exception
import dns.resolver
import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_der_public_key
from email_validator import EmailNotValidError, validate_email

from needlecast.config import Workspace

OK, MISSING, UNCHECKED = "ok", "missing", "unchecked"
DNS_LIFETIME_SECONDS = 3.0
CANARY = "sendgrid.net"
HTTP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    item: str
    status: str
    detail: str
    fix: str = ""


def diagnose(
    workspace: Workspace, resolver: dns.resolver.Resolver | None = None, http: httpx.Client | None = None
) -> list[Check]:
    """Every check of the module contract, in order."""
    sender = workspace.settings.clinic.sender_email
    domain = sender.rpartition("@")[2].lower()
    if resolver is None:
        resolver = dns.resolver.Resolver()
        resolver.lifetime = DNS_LIFETIME_SECONDS
    checks = [_sender(sender), _api_key(), _secret(), _webhook_key(workspace)]
    if _dns_reaches_internet(resolver):
        checks += [_spf(resolver, domain), _dkim(resolver, domain), _dmarc(resolver, domain)]
    else:
        checks += [_cannot_resolve(item, name) for item, name in _dns_items(domain)]
    checks.append(_verified_sender(workspace, sender, http))
    checks.append(_unsubscribe_host(workspace, http))
    return checks


def _sender(sender: str) -> Check:
    fix = (
        "set [clinic] sender_email in needlecast.toml to the clinic's address, and verify it in SendGrid "
        "(Settings → Sender Authentication): SendGrid refuses mail from an address it has not verified"
    )
    if "change-me" in sender.lower():
        return Check("sender address", MISSING, "still the placeholder", fix)
    try:
        validate_email(sender, check_deliverability=False)
    except EmailNotValidError as err:
        return Check("sender address", MISSING, f"not a valid address ({err})", fix)
    return Check("sender address", OK, f"{sender}; SendGrid must show it (or its domain) as verified")


def _api_key() -> Check:
    key = os.environ.get("SENDGRID_API_KEY", "")
    if not key:
        return Check(
            "SendGrid API key",
            MISSING,
            "SENDGRID_API_KEY is not set",
            "create an API key with the 'Mail Send' permission in SendGrid (Settings → API Keys) and set it as "
            "SENDGRID_API_KEY where needlecast runs",
        )
    if not key.startswith("SG."):
        return Check(
            "SendGrid API key",
            MISSING,
            "SENDGRID_API_KEY does not look like a SendGrid key (they start with SG.)",
            "copy the whole key from SendGrid again: it is shown only once, when created",
        )
    return Check("SendGrid API key", OK, "SENDGRID_API_KEY is set")


def _secret() -> Check:
    secret = os.environ.get("NEEDLECAST_SECRET", "")
    if len(secret) >= 32:
        return Check("link-signing secret", OK, "NEEDLECAST_SECRET is set")
    return Check(
        "link-signing secret",
        MISSING,
        "NEEDLECAST_SECRET is not set" if not secret else "NEEDLECAST_SECRET is shorter than 32 characters",
        "set NEEDLECAST_SECRET to a random text of at least 32 characters, the same wherever needlecast runs: "
        "it signs the unsubscribe links, so without it anyone could forge them",
    )


def _webhook_key(workspace: Workspace) -> Check:
    fix = (
        'in SendGrid (Settings → Mail Settings → Event Webhook) turn on "Signed Event Webhook", and copy its '
        "verification key into SENDGRID_WEBHOOK_PUBLIC_KEY or [tracking] webhook_public_key; without it bounces, "
        "complaints and unsubscribes are not recorded"
    )
    text = os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY", "") or workspace.settings.tracking.webhook_public_key
    if not text:
        return Check("webhook verification key", MISSING, "no verification key is set", fix)
    try:
        load_der_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        return Check("webhook verification key", MISSING, "the key set is not a valid verification key", fix)
    return Check("webhook verification key", OK, "set and valid")


def _txt(resolver: dns.resolver.Resolver, name: str) -> list[str] | None:
    """The TXT strings at `name` ([] when it has none), or None when the resolver cannot answer."""
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.YXDOMAIN, OSError):
        return None
    return [b"".join(r.strings).decode("utf-8", errors="replace") for r in answer]


def _dns_items(domain: str) -> list[tuple[str, str]]:
    return [("SPF", domain), ("DKIM", f"s1._domainkey.{domain}"), ("DMARC", f"_dmarc.{domain}")]


def _dns_reaches_internet(resolver: dns.resolver.Resolver) -> bool:
    """Whether the resolver sees the public DNS: SendGrid's own SPF record (`CANARY`) always exists there. A
    resolver of a machine without internet access may answer "no such name" to everything, which would
    otherwise read as records the clinic forgot to publish."""
    records = _txt(resolver, CANARY)
    return bool(records) and any(r.lower().startswith("v=spf1") for r in records or [])


def _cannot_resolve(item: str, name: str) -> Check:
    return Check(
        item,
        UNCHECKED,
        f"cannot resolve {name}: this computer's DNS does not reach the internet",
        "run `needlecast doctor` again on a computer with internet access",
    )


def _spf(resolver: dns.resolver.Resolver, domain: str) -> Check:
    records = _txt(resolver, domain)
    if records is None:
        return _cannot_resolve("SPF", domain)
    spf = [r for r in records if r.lower().startswith("v=spf1")]
    fix = (
        f'ask whoever manages {domain} to publish a TXT record "v=spf1 include:sendgrid.net ~all" (or to add '
        "include:sendgrid.net to the one there): it tells inboxes that SendGrid may send for the clinic"
    )
    if not spf:
        return Check("SPF", MISSING, f"{domain} has no SPF record", fix)
    if len(spf) > 1:
        return Check("SPF", MISSING, f"{domain} has {len(spf)} SPF records; inboxes ignore them all", fix)
    if "include:sendgrid.net" not in spf[0].lower():
        return Check("SPF", MISSING, f"{domain}'s SPF record does not name SendGrid", fix)
    return Check("SPF", OK, f"{domain}: {spf[0]}")


def _dkim(resolver: dns.resolver.Resolver, domain: str) -> Check:
    fix = (
        f"authenticate {domain} in SendGrid (Settings → Sender Authentication → Authenticate Your Domain) and "
        "publish the records it shows: the DKIM signature proves the emails really come from the clinic"
    )
    found = []
    for selector in ("s1", "s2"):
        name = f"{selector}._domainkey.{domain}"
        try:
            resolver.resolve(name, "CNAME")
            found.append(name)
            continue
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            pass
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.YXDOMAIN, OSError):
            return _cannot_resolve("DKIM", name)
        records = _txt(resolver, name)
        if records is None:
            return _cannot_resolve("DKIM", name)
        if any("p=" in r for r in records):
            found.append(name)
    if len(found) < 2:
        return Check("DKIM", MISSING, f"no DKIM key at s1._domainkey and s2._domainkey.{domain}", fix)
    return Check("DKIM", OK, f"{domain}: keys at s1 and s2._domainkey")


def _dmarc(resolver: dns.resolver.Resolver, domain: str) -> Check:
    name = f"_dmarc.{domain}"
    records = _txt(resolver, name)
    if records is None:
        return _cannot_resolve("DMARC", name)
    dmarc = [r for r in records if r.lower().startswith("v=dmarc1")]
    if len(dmarc) != 1:
        return Check(
            "DMARC",
            MISSING,
            f"{name} has no DMARC record" if not dmarc else f"{name} has {len(dmarc)} DMARC records",
            f'publish one TXT record at {name}, e.g. "v=DMARC1; p=none; rua=mailto:dmarc@{domain}": Gmail and '
            "Yahoo require it from bulk senders",
        )
    return Check("DMARC", OK, f"{name}: {dmarc[0]}")


VERIFIED = "sender verified in SendGrid"


def _sendgrid_lists(workspace: Workspace, key: str, http: httpx.Client | None) -> tuple[list[str], list[str]]:
    """SendGrid's verified single senders and validated authenticated domains (lower case); raises
    `httpx.HTTPError` (`HTTPStatusError` for an answer other than 200)."""
    base = workspace.settings.delivery.api_host.rstrip("/")
    client = http or httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False)
    headers = {"Authorization": f"Bearer {key}"}
    singles = client.get(f"{base}/v3/verified_senders", headers=headers, params={"limit": 1000})
    singles.raise_for_status()
    domains = client.get(f"{base}/v3/whitelabel/domains", headers=headers, params={"limit": 1000})
    domains.raise_for_status()
    verified = [
        str(s.get("from_email", "")).lower() for s in singles.json().get("results", []) if s.get("verified") is True
    ]
    valid = [str(d.get("domain", "")).lower() for d in domains.json() if d.get("valid") is True]
    return verified, valid


def _verified_sender(workspace: Workspace, sender: str, http: httpx.Client | None) -> Check:
    key = os.environ.get("SENDGRID_API_KEY", "")
    fix = (
        f"in SendGrid (Settings → Sender Authentication), authenticate the domain {sender.rpartition('@')[2]} "
        f"(best: it also gives the DKIM records) or verify {sender} as a single sender"
    )
    if not key or "change-me" in sender.lower():
        return Check(VERIFIED, UNCHECKED, "SendGrid cannot be asked without the API key and the sender", fix)
    try:
        verified, valid = _sendgrid_lists(workspace, key, http)
    except httpx.HTTPStatusError as err:
        status = err.response.status_code
        said = "the API key may not read Sender Authentication" if status in (401, 403) else f"SendGrid said {status}"
        return Check(VERIFIED, UNCHECKED, f"cannot ask SendGrid ({said})", f"check it yourself: {fix}")
    except (httpx.HTTPError, ValueError, AttributeError) as err:
        return Check(VERIFIED, UNCHECKED, f"cannot reach SendGrid ({type(err).__name__})", f"check it yourself: {fix}")
    domain = sender.rpartition("@")[2].lower()
    if sender.lower() in verified:
        return Check(VERIFIED, OK, f"{sender} is a verified single sender")
    authenticated = [d for d in valid if domain == d or domain.endswith(f".{d}")]
    if authenticated:
        return Check(VERIFIED, OK, f"SendGrid has authenticated {authenticated[0]}")
    return Check(VERIFIED, MISSING, f"SendGrid shows neither {sender} nor its domain as verified", fix)


def _unsubscribe_host(workspace: Workspace, http: httpx.Client | None) -> Check:
    base = workspace.settings.tracking.public_base_url.rstrip("/")
    fix = (
        f"run `needlecast web` where {base} points (behind HTTPS), and set [tracking] public_base_url to the "
        "address recipients reach it at: every email's unsubscribe link goes there"
    )
    if "change-me" in base.lower():
        return Check("unsubscribe host", MISSING, "[tracking] public_base_url is still the placeholder", fix)
    client = http or httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False)
    try:
        response = client.get(f"{base}/healthz")
    except httpx.HTTPError as err:
        return Check("unsubscribe host", MISSING, f"{base} cannot be reached ({type(err).__name__})", fix)
    finally:
        if http is None:
            client.close()
    if response.status_code != 200:
        return Check(
            "unsubscribe host", MISSING, f"{base}/healthz answers {response.status_code}, not needlecast's 200", fix
        )
    return Check("unsubscribe host", OK, f"{base} answers")
