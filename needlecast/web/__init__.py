"""The one web app: tracking pages and the SendGrid webhook, the signup form, the REST API, the console.

`needlecast.web.app.create_app(workspace, engine)` builds it; `needlecast web` and `needlecast serve` serve it
with uvicorn.
"""
