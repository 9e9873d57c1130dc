"""Customers: find one by identifier or uuid, search them by identifier prefix, and their event
timelines (show_events, and the paged timeline of /customers/{uuid}/events)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackway.http.routes.common import json_response, parameters, trackway_of, user_account


async def find_customer(request: Request) -> Response:
    account = await user_account(request)
    customer = await trackway_of(request).find_customer(account, await parameters(request))
    return json_response({"customer": customer})


async def customer_by_uuid(request: Request) -> Response:
    account = await user_account(request)
    customer = await trackway_of(request).customer_by_uuid(account, request.path_params["uuid"])
    return json_response({"customer": customer})


async def search_customers(request: Request) -> Response:
    account = await user_account(request)
    found = await trackway_of(request).search_customers(account, await parameters(request))
    return json_response(found)


async def customer_events(request: Request) -> Response:
    account = await user_account(request)
    page = await trackway_of(request).customer_events_page(
        account, request.path_params["uuid"], await parameters(request)
    )
    return json_response(page)


async def delete_customer(request: Request) -> Response:
    account = await user_account(request)
    answer = await trackway_of(request).delete_customer(account, request.path_params["uuid"])
    return json_response(answer)


async def show_events(request: Request) -> Response:
    account = await user_account(request)
    events = await trackway_of(request).customer_timeline(account, await parameters(request))
    return json_response(events)


routes = [
    Route("/api/v1/customers", find_customer, methods=["GET"]),
    # Before /customers/{uuid}: "search" is not a uuid.
    Route("/api/v1/customers/search", search_customers, methods=["GET"]),
    Route("/api/v1/customers/{uuid}/events", customer_events, methods=["GET"]),
    Route("/api/v1/customers/{uuid}", customer_by_uuid, methods=["GET"]),
    Route("/api/v1/customers/{uuid}", delete_customer, methods=["DELETE"]),
    Route("/api/v1/customer_search/show_events", show_events, methods=["GET"]),
]
