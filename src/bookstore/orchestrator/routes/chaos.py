"""The fault panel's API, present only with chaos on (BOOKSTORE_CHAOS=1, which
`bookstore up --chaos` sets); without it these paths answer 404. Only callers on
127.0.0.1 (or ::1) are served unless BOOKSTORE_CHAOS_ALLOW_REMOTE is on; others get 403.

    GET  /api/chaos                    processes, message rules, recent changes,
                                       the load and the scenario with their audit
    POST /api/chaos/faults             {"op": ...} relayed to the launcher (chaos.control)
    POST /api/chaos/load               {"rate": N, "durationS": S}
    POST /api/chaos/scenarios/{name}   play a scenario (chaos.scenarios)
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from bookstore.chaos.control import ControlError
from bookstore.chaos.scenarios import Busy, Chaos
from bookstore.orchestrator.errors import ApiError, error_response, json_response
from bookstore.orchestrator.parsing import read_body
from bookstore.settings import Settings

LOCAL = ("127.0.0.1", "::1")


class ChaosRoutes:
    def __init__(self, settings: Settings, chaos: Chaos) -> None:
        self.settings = settings
        self.chaos = chaos

    def _refused(self, request: Request) -> Response | None:
        host = request.client.host if request.client else ""
        if self.settings.chaos_allow_remote or host in LOCAL:
            return None
        return error_response(403, "FORBIDDEN", "Fault injection is served on 127.0.0.1 only.")

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await read_body(request, self.settings.max_body_bytes) or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(400, "INVALID_JSON", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_REQUEST", "body: expected a JSON object")
        return body

    async def state(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        try:
            launcher: dict[str, Any] = await self.chaos.fault({"op": "status"})
        except ControlError as exc:
            launcher = {"error": str(exc)}
        return json_response(
            {
                "launcher": launcher,
                "scenarios": [
                    {"name": name, "what": what} for name, (what, _) in self.chaos.scenarios.items()
                ],
                "load": self.chaos.load.as_json() if self.chaos.load else None,
                "scenario": self.chaos.scenario.as_json() if self.chaos.scenario else None,
            }
        )

    async def fault(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        body = await self._body(request)
        try:
            return json_response(await self.chaos.fault(body))
        except ControlError as exc:
            return error_response(409, "FAULT_REFUSED", str(exc))

    async def load(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        body = await self._body(request)
        try:
            run = self.chaos.start_load(
                float(body.get("rate", 10)), float(body.get("durationS", 10))
            )
        except Busy as exc:
            return error_response(409, "BUSY", str(exc))
        except (TypeError, ValueError) as exc:
            return error_response(400, "BAD_LOAD", str(exc))
        return json_response(run.as_json(), 202)

    async def scenario(self, request: Request, name: str) -> Response:
        if refused := self._refused(request):
            return refused
        try:
            run = self.chaos.start_scenario(name)
        except KeyError:
            return error_response(404, "NO_SUCH_SCENARIO", f"No scenario {name[:64]}.")
        except Busy as exc:
            return error_response(409, "BUSY", str(exc))
        return json_response(run.as_json(), 202)


def install(app: FastAPI, routes: ChaosRoutes) -> None:
    app.add_api_route("/api/chaos", routes.state, methods=["GET"], include_in_schema=False)
    app.add_api_route("/api/chaos/faults", routes.fault, methods=["POST"], include_in_schema=False)
    app.add_api_route("/api/chaos/load", routes.load, methods=["POST"], include_in_schema=False)
    app.add_api_route(
        "/api/chaos/scenarios/{name}", routes.scenario, methods=["POST"], include_in_schema=False
    )
