# consent-gateway: slim image, non-root, health-checked.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
# CONSENT_GATEWAY_IMAGE: every container is one of many, so cookie.dev_key_file is refused
# and the signing key must come from CONSENT_GATEWAY_COOKIE_KEY (config.yaml).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CONSENT_GATEWAY_IMAGE=1
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /app gateway \
    && mkdir -p /app/data && chown gateway /app/data
WORKDIR /app
COPY rules ./rules
COPY config.example.yaml ./config.yaml
USER gateway
# 8080: tag traffic and the consent API (public). 9091: /_admin, /metrics, /healthz,
# /readyz for operators and probes: publish it to your private network only.
EXPOSE 8080 9091
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9091/healthz', timeout=2).status == 200 else 1)"
# Listen on all interfaces inside the container; the signing key comes from
# CONSENT_GATEWAY_COOKIE_KEY (see config.yaml).
CMD ["consent-gateway", "serve", "--config", "config.yaml", "--host", "0.0.0.0", "--admin-host", "0.0.0.0"]
