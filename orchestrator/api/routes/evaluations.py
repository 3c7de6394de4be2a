"""`/v1/evaluations`: start an evaluation in the background, read its status, results and report plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import FileResponse

from orchestrator.api.deps import Config, Evaluations, require_token
from orchestrator.api.pages import DEFAULT_LIMIT, Limit, Offset, link_next
from orchestrator.api.protocol import EvaluationCreated, EvaluationOut, EvaluationRequest
from orchestrator.execution.evaluation_jobs import EvaluationJobs
from orchestrator.store import EvaluationRecord
from selfspec.errors import EvaluationNotFound

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"], dependencies=[Depends(require_token)])

PLOT = "report.png"


def _out(record: EvaluationRecord, jobs: EvaluationJobs) -> dict[str, Any]:
    progress = jobs.progress.get(record.id)
    return {**record.model_dump(), "report_available": bool(record.report_path),
            "progress": {"done": progress[0], "total": progress[1]} if progress else None}


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=EvaluationCreated)
async def create_evaluation(request: EvaluationRequest, jobs: Evaluations, response: Response) -> Any:
    eval_id = await jobs.submit(request)
    response.headers["Location"] = f"/v1/evaluations/{eval_id}"
    return {"id": eval_id, "status": "pending", "url": f"/v1/evaluations/{eval_id}"}


@router.get("", response_model=list[EvaluationOut])
def list_evaluations(jobs: Evaluations, request: Request, response: Response, limit: Limit = DEFAULT_LIMIT,
                     offset: Offset = 0) -> Any:
    """Newest first, one page (`Link: rel="next"` when more follow)."""
    rows = jobs.store.list_evaluations(limit=limit + 1, offset=offset)
    link_next(request, response, limit=limit, offset=offset, more=len(rows) > limit)
    return [_out(row, jobs) for row in rows[:limit]]


@router.get("/{eval_id}", response_model=EvaluationOut)
def get_evaluation(eval_id: str, jobs: Evaluations) -> Any:
    return _out(jobs.get(eval_id), jobs)


@router.get("/{eval_id}/plot", response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
def evaluation_plot(eval_id: str, jobs: Evaluations, config: Config) -> FileResponse:
    record = jobs.get(eval_id)
    root = (config.data_dir / "evaluations").resolve()
    plot = (Path(record.report_path).parent / PLOT).resolve() if record.report_path else None
    if plot is None or root not in plot.parents or not plot.is_file():
        raise EvaluationNotFound(f"evaluation {eval_id!r} has no plot (yet)")
    return FileResponse(plot, media_type="image/png")
