"""The FastAPI application: routers, error handlers, limits, offline docs, dashboard, worker."""

from __future__ import annotations

import gc
import logging
import mimetypes
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.admission import Admission
from app.catalogue.routes import router as catalogue_router
from app.compare.routes import router as compare_router
from app.datasets.routes import router as datasets_router
from app.errors import install_error_handlers
from app.events import EventHub
from app.limits import BodySizeLimit
from app.metrics import RequestMetrics
from app.openapi import drop_auth_when_open, spell_files_as_binary
from app.request_id import RequestId
from app.results.routes import router as results_router
from app.simulations.routes import router as simulations_router
from app.sweeps.routes import router as sweeps_router
from app.system.routes import router as system_router
from models.migrate import ensure_schema
from models.settings import export_datasets_dir, get_settings

STATIC = Path(__file__).parent / "static"
logger = logging.getLogger("app")
# The dashboard's module scripts load only with a JavaScript type; the platform's table (Windows'
# registry, /etc/mime.types), which StaticFiles asks, may map .js to another.
mimetypes.add_type("text/javascript", ".js")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    ensure_schema(settings.database_url, auto_migrate=settings.should_auto_migrate)
    async with AsyncExitStack() as stack:
        if settings.broker_url:
            from app.queue_check import broker_check
            from worker.celery_app import publish_many

            app.state.queue_check = broker_check
        else:
            from worker.embedded import EmbeddedWorker

            embedded = EmbeddedWorker()
            embedded.start()
            stack.callback(embedded.stop)  # runs last: after the admission has published
            publish_many = embedded.publish_many
            app.state.queue_check = lambda: (
                "ok" if embedded.alive else "error: embedded worker stopped"
            )
            logger.info("embedded worker started (no SCARCITY_BROKER_URL)")
        admission = Admission(
            publish_many,
            database_url=settings.database_url,
            max_active_per_owner=settings.max_active_per_owner,
        )
        admission.start()
        stack.push_async_callback(admission.stop)
        app.state.admission = admission
        events = EventHub(poll_seconds=settings.event_poll_seconds)
        await events.start(settings.database_url)
        stack.push_async_callback(events.stop)
        app.state.events = events
        # Everything loaded so far (torch, numpy, the app) lives as long as the process: keep
        # it out of the cyclic GC, whose full passes over it stalled requests by ~0.1 s.
        gc.freeze()
        yield


def create_app() -> FastAPI:
    settings = get_settings()
    export_datasets_dir(settings)  # the engine here and in the embedded engine process reads it
    app = FastAPI(
        title="Scarcity",
        summary="SF-HFE simulations (Hierarchical Federated Ensembles, data scarcity) as jobs.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served below from our own static files: works offline
        redoc_url=None,
        # Readable operation ids for generated clients: the route function's name
        # (`create_simulation`, not `create_simulation_simulations_post`).
        generate_unique_id_function=lambda route: route.name,
    )
    install_error_handlers(app)
    spell_files_as_binary(app)
    drop_auth_when_open(app, open_api=not settings.api_key_list)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        overrides={("POST", "/datasets"): (settings.max_upload_bytes, "SCARCITY_MAX_UPLOAD_BYTES")},
    )
    app.add_middleware(RequestId)
    app.add_middleware(RequestMetrics)
    # One router per domain (app/<domain>/routes.py); this order is the OpenAPI document's.
    for router in (
        simulations_router,
        results_router,
        compare_router,
        sweeps_router,
        datasets_router,
        catalogue_router,
        system_router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Scarcity API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


app = create_app()
