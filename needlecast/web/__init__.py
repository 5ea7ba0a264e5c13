"""The one web app: the pages an email links to and the SendGrid webhook (`recipient_pages.py`), the signup
form, the REST API, the console.

`needlecast.web.app.create_app(workspace, engine)` builds it; `needlecast web` and `needlecast serve` serve it
with uvicorn.
"""
