"""Operations: health, readiness and Prometheus metrics (routes, service)."""
