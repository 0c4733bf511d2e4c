FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fielding_statemachine ./fielding_statemachine
COPY schemas ./schemas
COPY worker ./worker
RUN pip install --no-cache-dir . && useradd --system worker
USER worker
ENTRYPOINT ["fielding-worker"]
CMD ["run"]
