# trustrec serve: a finished run's model over HTTP (CPU).
#   docker build -t trustrec-serve .
#   docker run -p 8000:8000 -v $PWD/runs:/runs:ro -v $PWD/api_keys.txt:/run/secrets/trustrec_api_keys:ro \
#       -e RUN_NAME=ease-ml100k -e TRUSTREC_DATA=/data -v /path/to/data:/data:ro trustrec-serve
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RUN_NAME=model \
    TRUSTREC_CACHE=/home/trustrec/.cache/trustrec

WORKDIR /src
# CPU-only torch first, from the PyTorch CPU index, so the trustrec install does not pull CUDA wheels
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve,llm]" && rm -rf /src

RUN useradd --create-home --uid 10001 trustrec
USER trustrec
WORKDIR /home/trustrec

EXPOSE 8000
# The run directory (from `trustrec run`) is mounted at /runs/$RUN_NAME; the dataset it names is
# read from TRUSTREC_DATA (mount it) or fetched into the cache. API keys: a mounted secret file.
CMD ["sh", "-c", "exec trustrec serve /runs/${RUN_NAME} --host 0.0.0.0 --port 8000 --api-keys /run/secrets/trustrec_api_keys"]
