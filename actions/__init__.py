"""Rasa adapter: the front office's capabilities as rasa-sdk custom actions, served by our aiohttp app.

`actions.server.setup(app, ctx, settings)` mounts `POST /webhook` and `GET /actions`; `actions.catalog`
lists the actions. Like the bot and the IVR, this package only parses input, calls `handlers/` and renders.
"""
