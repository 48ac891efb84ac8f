# syntax=docker/dockerfile:1
# Every service's image, from one template: the service is the build argument SERVICE (its
# directory under services/), the target is `admin-api` for the admin API (the service plus the
# admin console) and `service` for the others. Build from the repository root (the uv workspace):
#   docker build --build-arg SERVICE=scheduler --target service -t callback-platform/scheduler:dev .
#   docker build --build-arg SERVICE=admin-api --target admin-api -t callback-platform/admin-api:dev .
# BuildKit builds only the stages a target needs: the console stage for the admin-api target only.

# --- build: a virtual environment from uv.lock, the project installed into it as wheels -------
FROM python:3.11.14-slim-bookworm AS build
ARG SERVICE
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# dependencies first (a layer that changes only with the lock): the lock and every member's
# pyproject.toml, which uv needs to read the workspace
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/scheduler/pyproject.toml services/scheduler/
COPY services/state-tracker/pyproject.toml services/state-tracker/
COPY services/admin-api/pyproject.toml services/admin-api/
COPY services/exporter/pyproject.toml services/exporter/
COPY services/routing-sim/pyproject.toml services/routing-sim/
# the development package (callback-dev): its pyproject.toml only, for the workspace; --no-dev
# leaves it out (only the development group asks for it)
COPY dev/pyproject.toml dev/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace \
       --package "callback-${SERVICE:?--build-arg SERVICE=<a directory of services/> is needed}"
# then the code: the shared package and this service, as wheels (no source tree at run time)
COPY shared/src shared/src
COPY services/${SERVICE}/src services/${SERVICE}/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "callback-${SERVICE}"
# the image's entry point: one name for every service's console script (an exec-form ENTRYPOINT
# cannot read a build argument)
RUN ln -s "callback-${SERVICE}" /app/.venv/bin/callback-service

# --- console: the admin console's static files (Vite), built from its lockfile -----------------
FROM node:20.20.2-bookworm-slim AS console
WORKDIR /console
COPY services/admin-console/package.json services/admin-console/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY services/admin-console/index.html services/admin-console/tsconfig.json services/admin-console/vite.config.ts ./
COPY services/admin-console/src src
RUN npm run build

# --- runtime: the slim base, the virtual environment, a non-root user; no uv, no pip, no compiler
FROM python:3.11.14-slim-bookworm AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="callback-${SERVICE}" \
      org.opencontainers.image.description="Callback platform: ${SERVICE}"
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 10001 callback \
    && useradd --system --uid 10001 --gid callback --no-create-home --home-dir /app \
       --shell /usr/sbin/nologin callback
COPY --from=build /app/.venv /app/.venv
# no HTTP_PORT and no EXPOSE: the service listens on its settings' default port (the chart and
# docker-compose.yml set HTTP_PORT where they name it), which the health check asks the
# service's settings for (CALLBACK_SERVICE names them)
ENV PATH="/app/.venv/bin:$PATH" \
    CALLBACK_SERVICE=${SERVICE} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HTTP_HOST=0.0.0.0 \
    LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "callback_shared.healthcheck"]
# exec form: the service is PID 1 and gets SIGTERM itself (it stops cleanly, exit code 0)
STOPSIGNAL SIGTERM
ENTRYPOINT ["callback-service"]

# --- admin-api: the runtime plus the admin console it serves -----------------------------------
FROM runtime AS admin-api
COPY --from=console /console/dist /app/console
ENV ADMIN_CONSOLE_DIR=/app/console

# --- service: every other service (the last stage, so also what a build without --target gives)
FROM runtime AS service
