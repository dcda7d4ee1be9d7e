# ML Service container: `docker run -p 5000:5000 -e ML_TOTARA_URL=... -e ML_TOTARA_KEY=... -v /path/to/data:/etc/ml/data ml_service`
# It starts as root only to prepare the mounted data folder (deploy/docker-entrypoint.sh), then runs as user `ml`.
FROM python:3.12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# ML_EXTRAS=cluster adds the distributed-training extra (deploy/cluster/docker-compose.yml builds with it).
ARG ML_EXTRAS=""
RUN pip wheel --no-cache-dir --prefer-binary --wheel-dir /wheels ".${ML_EXTRAS:+[$ML_EXTRAS]}"

FROM python:3.12-slim
ENV TZ=Pacific/Auckland \
    ML_MODELS_DIR=/etc/ml/data/models \
    ML_LOGS_DIR=/etc/ml/data/train_logs \
    FLASK_ENV=production \
    ML_BIND=0.0.0.0:5000 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels && useradd --system --user-group --home /etc/ml ml
WORKDIR /etc/ml
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir -p /etc/ml/data && chown -R ml:ml /etc/ml
ENV ML_USER=ml ML_DATA_DIR=/etc/ml/data
EXPOSE 5000
HEALTHCHECK --interval=60s --timeout=5s CMD python -c "import socket; socket.create_connection(('127.0.0.1', 5000), 2)"
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
