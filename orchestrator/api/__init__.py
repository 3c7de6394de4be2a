"""The orchestrator REST API and run dashboard (`create_app` in main.py).

The work it starts and resumes (runs, evaluations, the loop thread they live on) is orchestrator/execution/.

    main.py           the app: lifespan (loop thread, services, resumes), routers, middleware, error mapping
    __main__.py       `python -m orchestrator.api`: the API without the full CLI
    serve_command.py  `selfspec serve orchestrator`: bind checks, then uvicorn over `create_app`
    settings.py       `ApiSettings` (token, hardening knobs) from `SELFSPEC_API_*`
    deps.py           FastAPI dependencies (`Annotated` aliases) and the bearer-token check
    routes/           one router per resource: runs, reviews, adapters, evaluations, health, ui
    protocol.py       request and response models
    errors.py         the one `SelfSpecError` -> JSON mapping (status per error class)
    middleware.py     pure ASGI middleware: request metrics, cross-site guard, early token check
    metrics.py        Prometheus metrics on the app's own registry
    run_configs.py    run configs from request bodies, merged over the server's config and confined
    queries.py        a run's progress as shown (rate window, ETA), from the store's counts
    events.py         a run's server-sent events, from the store's events table
    tickets.py        short-lived event-stream tickets, so the token never travels in a URL
    datasets.py       a round's dataset streamed as JSONL from the store
    pages.py          `limit`/`offset` paging with a `Link: rel="next"` header
    cache.py          the TTL cache that keeps many dashboards' polling cheap
    static/           the dashboard's page, scripts and styles (no build step)
"""
