"""A stand-in for the Hugging Face Hub API, just what `HfApi.create_repo` and `upload_folder` call.

    POST /api/repos/create                                  create (409 when it exists, as the Hub)
    POST /api/{type}s/{ns}/{name}/preupload/{revision}      every file "regular" (inline in the commit)
    POST /api/{type}s/{ns}/{name}/commit/{revision}         NDJSON: header, then files (base64 content)
    POST /api/validate-yaml                                 a README's YAML must parse to a mapping (the real
                                                            Hub checks its schema too; this fake does not)

Any other request is recorded in `state.unknown` and answered 404, so a test sees what else a client
version asks for. Repos and files live in memory; bodies are bounded (MAX_BODY). No network involved:
point `HF_ENDPOINT` (or `HfApi(endpoint=...)`) at it on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MAX_BODY = 64 << 20  # a fake's bound: tests upload small folders


@dataclass
class Repo:
    type: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)


@dataclass
class HubState:
    token: str = "hf_fake"
    repos: dict[str, Repo] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    validated: list[str] = field(default_factory=list)  # README texts sent to /api/validate-yaml


def create_fake_hub(state: HubState) -> FastAPI:
    app = FastAPI()

    def denied(request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {state.token}":
            return JSONResponse({"error": "Invalid credentials in Authorization header"}, status_code=401)
        return None

    async def body(request: Request) -> bytes:
        data = await request.body()
        if len(data) > MAX_BODY:
            raise ValueError("body too large for the fake hub")
        return data

    @app.post("/api/repos/create")
    async def create(request: Request) -> JSONResponse:
        if (refused := denied(request)) is not None:
            return refused
        data = json.loads(await body(request))
        repo_type = data.get("type") or "model"
        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{request.base_url}{prefix}{repo_id}"
        if repo_id in state.repos:
            return JSONResponse({"error": "You already created this repo", "url": url}, status_code=409)
        state.repos[repo_id] = Repo(type=repo_type, private=data.get("visibility", "private") == "private"
                                    if "visibility" in data else bool(data.get("private", False)))
        return JSONResponse({"url": url, "name": repo_id})

    @app.post("/api/{repo_type}s/{ns}/{name}/preupload/{revision}")
    async def preupload(repo_type: str, ns: str, name: str, revision: str, request: Request) -> JSONResponse:
        if (refused := denied(request)) is not None:
            return refused
        data = json.loads(await body(request))
        return JSONResponse({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in data["files"]], "commitOid": "0" * 40})

    @app.post("/api/{repo_type}s/{ns}/{name}/commit/{revision}")
    async def commit(repo_type: str, ns: str, name: str, revision: str, request: Request) -> JSONResponse:
        if (refused := denied(request)) is not None:
            return refused
        repo = state.repos.get(f"{ns}/{name}")
        if repo is None or repo.type != repo_type:
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        header: dict[str, Any] = {}
        for line in (await body(request)).decode().splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                header = item["value"]
            elif item["key"] == "file":
                repo.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                repo.files.pop(item["value"]["path"], None)
        oid = hashlib.sha1(json.dumps([header, sorted(repo.files)]).encode()).hexdigest()
        repo.commits.append(header.get("summary", ""))
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return JSONResponse({"commitUrl": f"{request.base_url}{prefix}{ns}/{name}/commit/{oid}", "commitOid": oid})

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request) -> JSONResponse:
        import yaml

        content = json.loads(await body(request))["content"]
        head, sep, _ = content.removeprefix("---\n").partition("\n---")
        try:
            ok = bool(sep) and isinstance(yaml.safe_load(head), dict)
        except yaml.YAMLError:
            ok = False
        state.validated.append(content)
        if ok:
            return JSONResponse({"errors": [], "warnings": []})
        return JSONResponse({"errors": [{"message": "Invalid YAML metadata"}], "warnings": []}, status_code=400)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
    async def other(path: str, request: Request) -> JSONResponse:
        state.unknown.append(f"{request.method} /{path}")
        return JSONResponse({"error": "not in the fake hub"}, status_code=404)

    return app
