"""Telegram adapter (aiogram 3): routers, keyboards, middlewares, webhook and polling.

Parses Telegram updates, calls the channel-agnostic use cases in `handlers/`, renders their results.
`bot.dispatcher.build_dispatcher` assembles the routers; `bot.webhook.setup` plugs it into the HTTP app.
"""
