"""`/user-items` and `/similar-items` (spec §2.2-2.4, D1-D4): parameter checks, business checks, wire format.

Handlers are plain functions of the query parameters returning (status, JSON body): the dispatch middleware
calls them on the raw ASGI scope, and they rank inline on the event loop (ranking is tens of µs of numpy on
precomputed arrays, less than a hop to the thread pool costs, and nothing in them waits on I/O).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from fastapi import APIRouter

from ml_service.api.responses import Answer, QueryRoute, business_error_body
from ml_service.data.tenant import ITEM_TYPES
from ml_service.serving import Recommender, TenantIndex

NOT_READY = "The recommender model is not ready yet"
NO_TENANT = "Bad request: no such tenant"
NOT_TRAINED = "Message: The model for tenant {} is not trained, probably for insufficient data"
NO_ITEM = "Bad request: no such item id"
NO_TYPE = "Bad request: no such item type is available"
TENANT_WHAT = "a Totara tenant id, 0 for the whole site"
TYPE_WHAT = "one of " + ", ".join(ITEM_TYPES) + ", or a newer Totara item type the tenant's export has (e.g. totara_program)"
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,18}")
MAX_USER_ID_DIGITS = 19  # Totara's user ids are BIGINT: at most 9223372036854775807
_SHOWN = 40  # characters of a bad value quoted back in a 400 message


def shown(raw: str) -> str:
    """A client's value quoted in a message: repr of at most _SHOWN characters (a 5 MB value is not echoed)."""
    return repr(raw) if len(raw) <= _SHOWN else repr(raw[:_SHOWN]) + f"... ({len(raw)} characters)"


class BadParameter(Exception):
    """A missing or malformed query parameter (D4): HTTP 400 with a message naming it and what is allowed."""


def require(params: Mapping[str, str], name: str, what: str) -> str:
    value = params.get(name)
    if value is None or value.strip() == "":
        state = "is missing" if value is None else "is empty"
        raise BadParameter(f"Bad request: the parameter {name} {state}; expected {what}")
    return value.strip()


def parse_n_items(params: Mapping[str, str], maximum: int) -> int:
    what = f"a whole number from 1 to {maximum}"
    raw = require(params, "n_items", what)
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise BadParameter(f"Bad request: n_items={shown(raw)} is not a whole number; expected {what}")
    n = int(raw)
    if not 1 <= n <= maximum:
        raise BadParameter(f"Bad request: n_items={n} is out of range; expected {what}")
    return n


def parse_user_id(params: Mapping[str, str]) -> str:
    what = f"a Totara user id, a whole number such as 42 (at most {MAX_USER_ID_DIGITS} digits)"
    raw = require(params, "totara_user_id", what)
    if not raw.isascii() or not raw.isdigit() or len(raw.lstrip("0")) > MAX_USER_ID_DIGITS:
        raise BadParameter(f"Bad request: totara_user_id={shown(raw)} is not a user id; expected {what}")
    return raw


def wire_items(index: TenantIndex, ranked: list[tuple[int, float]]) -> bytes:
    """`{"items":[[id,score],...],"success":true}`, ids stripped of type names and ` .4f` scores, as the bytes
    dump_json would give (the ids are JSON-encoded once at load; a formatted score never needs escaping)."""
    ids = index.json_wire_ids
    isfinite = math.isfinite  # a NaN or infinite score (a damaged model) drops its item: never " nan" on the wire
    items = ",".join(['[%s,"% .4f"]' % (ids[i], score) for i, score in ranked if isfinite(score)])
    return ('{"items":[' + items + '],"success":true}').encode("ascii")


_ERROR_BODIES: dict[str, bytes] = {}


def error_body(message: str) -> bytes:
    """business_error_body(message), remembered for the few fixed messages (D4 messages vary and are not)."""
    body = _ERROR_BODIES.get(message)
    if body is None:
        body = business_error_body(message)
        if message in (NOT_READY, NO_TENANT, NO_ITEM, NO_TYPE):
            _ERROR_BODIES[message] = body
    return body


def tenant_problem(recommender: Recommender, tenant: str) -> tuple[TenantIndex | None, str | None]:
    """Steps 1-3 of spec §2.2: (the tenant's index, None) or (None, the message to answer with)."""
    state = recommender.state
    index = state.indexes.get(tenant)
    if index is not None:
        return index, None
    if not recommender.ready:
        return None, NOT_READY
    if not recommender.knows_tenant(tenant):
        return None, NO_TENANT
    return None, NOT_TRAINED.format(tenant)


def _param(name: str, description: str, example: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": True, "description": description, "example": example, "schema": schema}


_TENANT_PARAM = _param("tenant", "Totara tenant id; 0 = no tenant (whole site)", "0", {"type": "string"})


@dataclass(frozen=True)
class RecommendationRoutes:
    """The router (documented in /openapi.json) and the same routes by path, for the dispatch fast path."""

    router: APIRouter
    endpoints: dict[str, QueryRoute]


def build_router(recommender: Recommender, *, seen_policy: str, max_n_items: int) -> RecommendationRoutes:
    """The two recommendation routes, bound to one Recommender and the serving settings."""
    router = APIRouter()
    n_items_param = _param(
        "n_items", "How many items to return", "5", {"type": "integer", "minimum": 1, "maximum": max_n_items}
    )
    type_what = TYPE_WHAT

    def user_items(params: Mapping[str, str]) -> Answer:
        try:
            user_id = parse_user_id(params)
            item_type = require(params, "item_type", type_what)
            tenant = require(params, "tenant", TENANT_WHAT)
            n = parse_n_items(params, max_n_items)
        except BadParameter as exc:
            return 400, business_error_body(str(exc))
        index, problem = tenant_problem(recommender, tenant)
        if index is None:
            return 200, error_body(problem or NOT_READY)
        # D1: an unknown user is not an error (cold start), so the type is the next check: the five known types,
        # or a newer type this tenant's model has (spec §11 item 16).
        if not index.has_type(item_type):
            return 200, error_body(NO_TYPE)
        return 200, wire_items(index, index.rank_user(user_id, item_type, n, seen_policy))

    def similar_items(params: Mapping[str, str]) -> Answer:
        try:
            item_id = require(params, "totara_item_id", "a prefixed item id such as engage_article12")
            tenant = require(params, "tenant", TENANT_WHAT)
            n = parse_n_items(params, max_n_items)
        except BadParameter as exc:
            return 400, business_error_body(str(exc))
        index, problem = tenant_problem(recommender, tenant)
        if index is None:
            return 200, error_body(problem or NOT_READY)
        ranked = index.rank_similar(item_id, n)
        if ranked is None:
            return 200, error_body(NO_ITEM)
        return 200, wire_items(index, ranked)

    routes = {"/user-items": QueryRoute(user_items), "/similar-items": QueryRoute(similar_items)}
    router.add_api_route(
        "/user-items",
        routes["/user-items"].endpoint,
        methods=["GET"],
        name="user_items",
        summary="Recommendations of one item type for a user",
        openapi_extra={
            "parameters": [
                _param("totara_user_id", "Totara user id", "42", {"type": "string", "pattern": "^[0-9]+$"}),
                _param("item_type", "Item type to recommend: " + TYPE_WHAT, "engage_article", {"type": "string"}),
                _TENANT_PARAM,
                n_items_param,
            ]
        },
    )
    router.add_api_route(
        "/similar-items",
        routes["/similar-items"].endpoint,
        methods=["GET"],
        name="similar_items",
        summary="Items of the same family most similar to an item",
        openapi_extra={
            "parameters": [
                _param("totara_item_id", "Prefixed Totara item id", "engage_article12", {"type": "string"}),
                _TENANT_PARAM,
                n_items_param,
            ]
        },
    )
    return RecommendationRoutes(router, routes)
