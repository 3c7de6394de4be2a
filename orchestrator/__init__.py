"""The orchestrator: synthesis runs over the generator and retriever services, and the API that serves them.

    api/        the FastAPI app: routes, request/response models, auth, middleware, metrics, dashboard
    execution/  what runs and resumes work: the run driver and round runner, services, sweeps, review
                rules, and the API's loop thread, run manager, run workers and evaluation jobs
    pipeline/   the synthesis stages, one pure async function module each
    store/      the run store (SQL): runs, items, events, adapters, reviews, evaluations
"""
