# COLT: one image for the web process (Daphne) and the measurement workers (Celery).
#   docker build -t colt .                         # with the local LLM fleet (~1.96 GB of GGUF)
#   docker build -t colt --build-arg LOCAL_MODELS=0 .   # remote models only (a fleet file)
#   docker build -t colt-cuda --build-arg CUDA_NVCC=1 .  # a CUDA measurement worker: adds nvcc
#     (NVIDIA's PyPI wheel), which TVM calls to build kernels; the NVIDIA container toolkit on
#     the host provides the driver (docs/gpu-hosts.md).
FROM python:3.11-slim-bookworm

ARG LOCAL_MODELS=1
ARG CUDA_NVCC=0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COLT_DEBUG=0 \
    COLT_STATIC_ROOT=/srv/colt/staticfiles

# g++: TVM links the shared libraries it uploads to RPC measurement hosts
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/colt
RUN useradd --system --create-home --home-dir /home/colt colt
COPY requirements.txt constraints.txt ./
RUN python -m pip install --no-cache-dir -r requirements.txt -c constraints.txt \
 && if [ "$CUDA_NVCC" = "1" ]; then \
      python -m pip install --no-cache-dir nvidia-cuda-nvcc-cu12==12.9.86 \
      && ln -s "$(python -c 'import nvidia.cuda_nvcc, os; print(os.path.dirname(nvidia.cuda_nvcc.__file__))')" /usr/local/cuda; \
    fi
ENV PATH=/usr/local/cuda/bin:$PATH

COPY --chown=colt:colt . .
# static files are collected at build time; a throwaway key is enough for that step
RUN COLT_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && if [ "$LOCAL_MODELS" = "1" ]; then COLT_SECRET_KEY=fetch-only python manage.py fetch_models; fi \
 && chown -R colt:colt /srv/colt

USER colt
EXPOSE 8000
# the web process's health: /healthz with an allowed Host (the first of COLT_ALLOWED_HOSTS) as
# the TLS proxy would send it; compose gives the workers a Celery ping instead
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import os,urllib.request as u; h=os.environ.get('COLT_ALLOWED_HOSTS','localhost').split(',')[0].lstrip('.'); u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': h, 'X-Forwarded-Proto': 'https'}), timeout=4)" || exit 1
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "colt_site.asgi:application"]
