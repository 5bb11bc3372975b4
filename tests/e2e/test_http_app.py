from aiohttp import web

from service.http import create_app
from tests.helpers import http_client


async def test_health_ready_metrics(services):
    async with http_client(create_app(services)) as client:
        assert (await client.get("/health")).status == 200
        ready = await client.get("/ready")
        body = await ready.json()
        assert ready.status == 200 and body["status"] == "ok" and body["down"] == []
        if services.settings.redis_url:
            assert body["checks"]["redis"] == "ok"
        metrics = await client.get("/metrics")
        text = await metrics.text()
        assert metrics.status == 200 and metrics.content_type == "text/plain"
        assert 'frontoffice_http_requests_total{method="GET",route="/health",status="200"}' in text
        # Methods other than the usual ones share one label value: a client cannot grow the metrics without bound.
        for verb in ("PROPFIND", "MKCOL"):
            assert (await client.request(verb, "/health")).status == 405
        text = await (await client.get("/metrics")).text()
        assert 'frontoffice_http_requests_total{method="other",route="unmatched",status="405"}' in text
        assert "PROPFIND" not in text and "MKCOL" not in text


async def test_ready_names_what_is_down(services):
    app = create_app(services)
    async with http_client(app) as client:
        await services.engine.dispose()
        # Point the engine at a server that does not exist: /ready must say so, not hang or crash.
        from storage.db import create_engine

        good = services.engine
        services.engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
        try:
            response = await client.get("/ready")
            body = await response.json()
            assert response.status == 503 and body["down"] == ["database"]
        finally:
            await services.engine.dispose()
            services.engine = good


async def test_unexpected_error_is_logged_not_leaked(services, caplog):
    app = create_app(services)

    async def broken(_request):
        raise ValueError("secret internals")

    app.router.add_get("/broken", broken)
    async with http_client(app) as client:
        response = await client.get("/broken")
        body = await response.json()
        assert response.status == 500 and "secret" not in str(body) and body["incident"]
    assert "secret internals" in caplog.text


async def test_oversized_body_is_refused(services):
    app = create_app(services)

    async def echo(request):
        return web.Response(text=str(len(await request.read())))

    app.router.add_post("/echo", echo)
    async with http_client(app) as client:
        assert (await client.post("/echo", data=b"x" * 50_000)).status == 200
        assert (await client.post("/echo", data=b"x" * 2_000_000)).status == 413


async def test_shutdown_closes_the_bot_session_without_calling_the_bot_api(services, fake_bot_api):
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    bot = Bot(fake_bot_api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake_bot_api.base_url)))
    await bot.get_me()
    services.ctx.extras["bot"] = bot
    await services.close()
    assert [call.method for call in fake_bot_api.calls] == ["getMe"]  # no "close": it would log the bot out
    assert bot.session._session is None or bot.session._session.closed
