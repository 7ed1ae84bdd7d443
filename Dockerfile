FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY notifier notifier
COPY workers workers
RUN pip install --no-cache-dir .
USER nobody
