# MedSynth web app; the trainer it spawns runs in the same image (CUDA build of PyTorch).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MEDSYNTH_DATA=/data PIP_NO_CACHE_DIR=1
WORKDIR /srv/medsynth

COPY requirements-torch.txt pyproject.toml ./
RUN pip install -r requirements-torch.txt
COPY app ./app
COPY trainer ./trainer
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY alembic.ini README.md ./
RUN pip install -e .

VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
# serve's defaults bound slow clients (--header-timeout 10 --body-timeout 60 --keep-alive 5
# --limit-concurrency 256); see README "Security".
CMD ["sh", "-c", "python -m app migrate && python -m app serve --host 0.0.0.0 --port 8000 --demo-on-first-start"]
