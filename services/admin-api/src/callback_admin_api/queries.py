"""The queries of the guide: the list, one record with its metrics, Callback Search,
availability of a service's day, and the granted services."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callback_shared.models import RETENTION, ServiceConfig
from callback_shared.mongo import Document
from callback_shared.record import F

from callback_admin_api.auth import Principal, load_callback, require_service
from callback_admin_api.context import AdminApi
from callback_admin_api.listing import (
    InvalidCriteria,
    ListCriteria,
    PageCursor,
    RangePreset,
    build_criteria,
    query_plan,
    resolve_range,
)
from callback_admin_api.problems import Forbidden, InvalidField, NotFound
from callback_admin_api.report import ALL_SERVICES, ReportEntry, recent_cancellations
from callback_admin_api.rules import SEARCH_LIMIT
from callback_admin_api.schedule import openings, slot_starts, start_of_day
from callback_admin_api.views import (
    Availability,
    CallbackPage,
    CallbackView,
    ListFilters,
    ListQuery,
    SearchResults,
    ServiceList,
    ServiceView,
    Slot,
    callback_view,
    search_row,
)

#: How long past its expiry a record may still be there (the TTL monitor runs now and then).
TTL_GRACE = timedelta(days=1)


def list_criteria(
    principal: Principal, filters: ListFilters, now: datetime, *, location: str = "query"
) -> tuple[ListCriteria, datetime, datetime]:
    """The criteria of the list's filters (also bulk cancel's ``all_in_range``), and the range
    asked for; names the offending field (a query parameter, or a member of a body)."""
    try:
        zone = ZoneInfo(filters.tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidField("tz", "unknown time zone", location=location) from None
    try:
        start, end = resolve_range(filters.range, filters.from_, filters.to, now=now, zone=zone)
        if filters.service:
            ungranted = sorted(name for name in set(filters.service) if not principal.grants(name))
            if ungranted:
                raise Forbidden(f"service(s) not granted to you: {', '.join(ungranted)}")
            services: frozenset[str] | None = frozenset(filters.service)
        else:
            services = None if principal.all_services else principal.services
        criteria = build_criteria(
            start,
            end,
            services=services,
            states=frozenset(filters.state or ()) or None,
            search_field=filters.field,
            q=filters.q,
        )
    except InvalidCriteria as exc:
        raise InvalidField(exc.field, exc.message, location=location) from None
    return criteria, start, end


def retained(criteria: ListCriteria, now: datetime) -> ListCriteria:
    """Nothing older is retained (the TTL index deletes it; its monitor may lag a little)."""
    return replace(criteria, start=max(criteria.start, now - RETENTION - TTL_GRACE))


async def list_callbacks(api: AdminApi, principal: Principal, request: ListQuery) -> CallbackPage:
    now = api.clock()
    criteria, start, end = list_criteria(principal, request, now)
    try:
        after = PageCursor.decode(request.cursor) if request.cursor else None
    except InvalidCriteria as exc:
        raise InvalidField(exc.field, exc.message, location="query") from None
    docs: list[Document] = []
    window = timedelta(0)
    shown = retained(criteria, now)
    if not criteria.matches_nothing and shown.start < shown.end:
        docs, window = await api.repository.page(
            shown, query_plan(shown), after, request.page_size + 1
        )
    custom = request.from_ is not None or request.to is not None
    more = len(docs) > request.page_size
    docs = docs[: request.page_size]
    configs = await api.repository.service_configs(doc[F.SERVICE_NAME] for doc in docs)
    items = [callback_view(doc, configs[doc[F.SERVICE_NAME]], now) for doc in docs]
    next_cursor = None
    if more:
        last = docs[-1]
        next_cursor = PageCursor(last[F.DESIRED_TIME], last["_id"], window.total_seconds()).encode()
    return CallbackPage(
        items=items,
        next_cursor=next_cursor,
        page_size=request.page_size,
        range_from=start,
        range_to=end,
        range=None if custom else request.range or RangePreset.LAST_14_DAYS,
    )


async def get_callback(
    api: AdminApi, principal: Principal, callback_id: UUID, *, advanced: bool
) -> CallbackView:
    doc = await load_callback(api.repository, principal, callback_id)
    config, _ = await api.repository.service_config(doc[F.SERVICE_NAME])
    return callback_view(doc, config, api.clock(), advanced=advanced)


def search_filter(q: str) -> Document:
    """Callback Search matches a whole callback id or a whole customer number."""
    text = q.strip()
    try:
        return {"_id": UUID(text)}
    except ValueError:
        pass
    digits = re.sub(r"[\s().-]", "", text).removeprefix("+")
    if not digits.isdigit() or not digits.isascii() or len(digits) > 15:
        raise InvalidField("q", "a callback id or a customer phone number", location="query")
    return {F.CUSTOMER_NUMBER: "+" + digits}


async def search_callbacks(api: AdminApi, principal: Principal, q: str) -> SearchResults:
    filter_ = search_filter(q)
    if not principal.all_services:
        filter_[F.SERVICE_NAME] = {"$in": sorted(principal.services)}
    docs = await api.repository.search(filter_, SEARCH_LIMIT)
    configs = await api.repository.service_configs(doc[F.SERVICE_NAME] for doc in docs)
    now = api.clock()
    return SearchResults(items=[search_row(doc, configs[doc[F.SERVICE_NAME]], now) for doc in docs])


async def availability(
    api: AdminApi, principal: Principal, service_name: str, day: date
) -> Availability:
    require_service(principal, service_name)
    config, _ = await api.repository.service_config(service_name)
    now = api.clock()
    starts = slot_starts(config, day)
    taken = await api.repository.slots_taken(
        service_name, start_of_day(config, day), start_of_day(config, day + timedelta(days=1))
    )
    slots = []
    for start in starts:
        used = taken.get(start, 0)
        if start > now and used < config.slot_capacity:
            slots.append(
                Slot(
                    start=start,
                    local_start=start.astimezone(config.zone),
                    capacity=config.slot_capacity,
                    taken=used,
                    remaining=config.slot_capacity - used,
                )
            )
    return Availability(
        service_name=service_name,
        date=day,
        time_zone=config.time_zone,
        slot_length_minutes=config.slot_length_minutes,
        closed=not openings(config, day),
        slots=slots,
    )


async def list_services(api: AdminApi, principal: Principal) -> ServiceList:
    """Granted services: stored settings, and (for named grants) the defaults of the rest."""
    if principal.all_services:
        stored = await api.repository.stored_services(None)
        return ServiceList(items=[ServiceView(settings=config, stored=True) for config in stored])
    names = sorted(principal.services)
    by_name = {config.name: config for config in await api.repository.stored_services(names)}
    return ServiceList(
        items=[
            ServiceView(
                settings=by_name.get(name) or ServiceConfig(name=name), stored=name in by_name
            )
            for name in names
        ]
    )


async def get_service(api: AdminApi, principal: Principal, service_name: str) -> ServiceView:
    require_service(principal, service_name)
    config, stored = await api.repository.service_config(service_name)
    return ServiceView(settings=config, stored=stored)


async def cancellation_report(api: AdminApi, principal: Principal) -> list[ReportEntry]:
    """The caller's recent cancellations (and refused ones) in the services granted to them,
    newest first, as far back as the report's retention (EXPORTER_REPORT_RETENTION_DAYS); 404
    when there are none (the guide: the file exists only then)."""
    now = api.clock()
    services = ALL_SERVICES if principal.all_services else principal.services
    since = now - api.settings.report_retention
    entries = await recent_cancellations(
        api.repository.db, principal.username, services, since=since, now=now
    )
    if not entries:
        raise NotFound("you have cancelled no callbacks recently")
    return entries


async def view(api: AdminApi, doc: Document, config: ServiceConfig | None = None) -> CallbackView:
    """The view of a callback a command just wrote (under ``config``, its service's settings, if
    the command read them)."""
    if config is None:
        config, _ = await api.repository.service_config(doc[F.SERVICE_NAME])
    return callback_view(doc, config, api.clock())
