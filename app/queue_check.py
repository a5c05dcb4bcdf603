"""Readiness of the distributed queue: can we reach the Redis broker right now?"""

from __future__ import annotations

import redis

from models.settings import get_settings


def broker_check() -> str:
    settings = get_settings()
    try:
        client = redis.Redis.from_url(
            settings.broker_url or "",
            socket_timeout=settings.publish_timeout_seconds,
            socket_connect_timeout=settings.publish_timeout_seconds,
        )
        client.ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
