# One image for the API (+ dashboard), the workers and flower. Same pins as `make install`.
FROM python:3.11-slim
ARG TORCH_SPEC=torch==2.14.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TOROID_HOME=/data
WORKDIR /app
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY worker ./worker
COPY dashboard ./dashboard
COPY store ./store
COPY toroid ./toroid
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" ".[postgres,monitor,vision]"
VOLUME /data
EXPOSE 8000
CMD ["toroid", "api", "--host", "0.0.0.0", "--port", "8000"]
