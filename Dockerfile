# syntax=docker/dockerfile:1
# A slim image that runs any `aquami` sub-command as a non-root user:
#   docker run --rm aquami server run      (environment: AQUAMI_DATABASE_URL, AQUAMI_HOST, AQUAMI_PORT)
#   docker run --rm aquami collector run   (AQUAMI_DATABASE_URL, AQUAMI_MQTT_URL)
#   docker run --rm -v ./gw.toml:/etc/aquami/gateway.toml:ro -v gw-spool:/var/lib/aquami/spool \
#       aquami gateway run /etc/aquami/gateway.toml
#     (gw.toml's [spool] path must be under /var/lib/aquami/spool, as in
#     gateway/examples/compose-gateway.toml: a relative path lands beside the config, which the
#     image's user cannot write; the image makes that folder, as the gateway never makes a spool's)
# Docker cannot run on the machines this project is developed on: this file is kept correct by
# reading (see README, "Containers").

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# LICENSE goes into the installed package's metadata (aquami-*.dist-info/licenses/), so the image
# carries the licence it is distributed under (Apache-2.0, section 4a); before, it did not.
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY aquami ./aquami
COPY firmware_protocols ./firmware_protocols
COPY gateway ./gateway
COPY collector ./collector
COPY simulators ./simulators
COPY server ./server
RUN python -m venv /opt/aquami \
 && /opt/aquami/bin/pip install -c constraints.txt .

FROM python:3.11-slim-bookworm AS runtime
RUN useradd --system --uid 10001 --home-dir /var/lib/aquami --create-home aquami \
 && install -d -o aquami -g aquami /var/lib/aquami/spool
COPY --from=build /opt/aquami /opt/aquami
ENV PATH=/opt/aquami/bin:$PATH PYTHONUNBUFFERED=1 AQUAMI_HOST=0.0.0.0
USER aquami
WORKDIR /var/lib/aquami
EXPOSE 8000
ENTRYPOINT ["aquami"]
CMD ["--help"]
