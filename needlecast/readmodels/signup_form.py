"""The signup form as the hosted page and the clinic's own site show it.

Contract: `form_fields(workspace)` is what the form offers (the workspace's concerns, the `[signup]` wording,
the honeypot field's name); `form_snippet(workspace, form)` is a plain HTML form (no script) that posts to the
hosted `/subscribe` (`web.signup`), recording consents as `form:FORM`, for the clinic to paste into its pages
(`needlecast form snippet`). Both only read the workspace's files; every value shown is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.templating.recipient import link_base

HONEYPOT = "website"  # a field people never see and bots fill in


def form_fields(workspace: Workspace) -> dict[str, Any]:
    """The form's choices and wording (see the module contract)."""
    vocabulary = load_vocabulary_for(workspace)
    return {
        "concerns": [{"name": c.name, "label": c.label} for c in vocabulary.concerns],
        "signup": workspace.settings.signup,
        "honeypot": HONEYPOT,
    }


def form_snippet(workspace: Workspace, form: str = "website") -> str:
    """A plain HTML form (no script) that posts to the hosted endpoint, for the clinic's own pages."""
    fields = form_fields(workspace)
    action = f"{link_base(workspace.settings)}/subscribe"
    signup = workspace.settings.signup
    concerns = "\n".join(
        f'    <label><input type="checkbox" name="concerns" value="{escape(c["name"])}"> {escape(c["label"])}</label>'
        for c in fields["concerns"]
    )
    return f"""<form method="post" action="{escape(action)}" class="needlecast-signup">
  <input type="hidden" name="form" value="{escape(form)}">
  <label>Email address <input type="email" name="email" required autocomplete="email"></label>
  <label>First name <input type="text" name="first_name" autocomplete="given-name"></label>
  <fieldset>
    <legend>What would you like to hear about? (optional)</legend>
{concerns}
  </fieldset>
  <label><input type="checkbox" name="marketing_consent" value="yes" required>
    {escape(signup.marketing_wording)}</label>
  <label><input type="checkbox" name="concern_consent" value="yes">
    {escape(signup.concern_wording)}</label>
  <div style="position:absolute;left:-10000px" aria-hidden="true">
    <label>Leave this field empty <input type="text" name="{HONEYPOT}" tabindex="-1" autocomplete="off"></label>
  </div>
  <button type="submit">Sign up</button>
</form>
"""
