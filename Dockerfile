# Tattletail as a Lambda container image. Build for the function's architecture:
#   docker build --platform linux/amd64 -t tattletail .
#       bundles ./tattletail.toml (required): the build validates it and runs its rule tests
#   docker build --platform linux/amd64 --build-arg CONFIG_SOURCE=s3 -t tattletail .
#       no bundled config: the function must set S3_CONFIG_BUCKET and S3_CONFIG_PATH
# The base is pinned by digest so a rebuild is the same image; refresh it deliberately with
#   docker buildx imagetools inspect public.ecr.aws/lambda/python:3.12
# CI builds on a local stand-in for it (BASE_IMAGE, see .ci/container.sh).
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.12@sha256:92c88c1adc374b073b07b12bd4045497af7da68230d47c2b330423115c5850dc

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The runtime dependencies first, in a layer of their own: a change to the code alone reuses it.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && pip install --no-cache-dir --target /opt/deps -r requirements.txt
COPY README.md ./
COPY tattletail ./tattletail
RUN pip install --no-cache-dir --no-deps --target /opt/app .

FROM ${BASE_IMAGE}
COPY --from=build /opt/deps ${LAMBDA_TASK_ROOT}
COPY --from=build /opt/app ${LAMBDA_TASK_ROOT}
# The shipped rule pack, so a bundled config can `include = ["rules/*.toml"]`.
COPY config/rules ${LAMBDA_TASK_ROOT}/rules
# The glob copies tattletail.toml only when it exists (pyproject.toml keeps the COPY non-empty).
COPY pyproject.toml tattletail.tom[l] /tmp/bundle/
WORKDIR ${LAMBDA_TASK_ROOT}
# bundled (the default): ./tattletail.toml must exist. s3: the function reads its config from S3.
ARG CONFIG_SOURCE=bundled
# A broken bundled config or a failing rule test fails the build, and the handler's import-time
# cold start compiles every rule once more. No config at all fails the build too, unless
# CONFIG_SOURCE=s3 says where the function will find it: not every invocation, later.
RUN if [ "${CONFIG_SOURCE}" != bundled ] && [ "${CONFIG_SOURCE}" != s3 ]; then \
        echo "error: CONFIG_SOURCE must be 'bundled' or 's3', not '${CONFIG_SOURCE}'" >&2; \
        exit 1; \
    fi \
    && if [ -f /tmp/bundle/tattletail.toml ]; then \
        cp /tmp/bundle/tattletail.toml ./tattletail.toml \
        && python -m tattletail validate --config tattletail.toml \
        && TATTLETAIL_EAGER_INIT=1 TATTLETAIL_WORKERS=1 python -c "import tattletail.lambda_handler"; \
    elif [ "${CONFIG_SOURCE}" = s3 ]; then \
        echo "No bundled config (CONFIG_SOURCE=s3): the function must set S3_CONFIG_BUCKET and S3_CONFIG_PATH."; \
    else \
        echo "error: no tattletail.toml next to the Dockerfile, so the image would have no config." >&2; \
        echo "error: put your tattletail.toml there to bundle it, or build with" >&2; \
        echo "error: --build-arg CONFIG_SOURCE=s3 and set S3_CONFIG_BUCKET and S3_CONFIG_PATH on the function." >&2; \
        exit 1; \
    fi \
    && rm -rf /tmp/bundle \
    && python -c "import tattletail.lambda_handler"
CMD ["tattletail.lambda_handler.handler"]
