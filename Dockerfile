# Tattletail as a Lambda container image.
#   docker build -t tattletail .        (bundles ./tattletail.toml when the file exists)
# Without a bundled config, set S3_CONFIG_BUCKET and S3_CONFIG_PATH on the function.
# Pinned by digest so a rebuild is the same image; refresh it deliberately with
#   docker buildx imagetools inspect public.ecr.aws/lambda/python:3.12
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.12@sha256:92c88c1adc374b073b07b12bd4045497af7da68230d47c2b330423115c5850dc

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tattletail ./tattletail
# Only the runtime dependencies, into a folder the final stage copies whole.
RUN pip install --no-cache-dir --target /opt/tattletail .

FROM ${BASE_IMAGE}
COPY --from=build /opt/tattletail ${LAMBDA_TASK_ROOT}
# The glob copies tattletail.toml only when it exists (pyproject.toml keeps the COPY non-empty).
COPY pyproject.toml tattletail.tom[l] /tmp/bundle/
# The shipped rule pack, so a bundled config can `include = ["rules/*.toml"]`.
COPY config/rules ${LAMBDA_TASK_ROOT}/rules
WORKDIR ${LAMBDA_TASK_ROOT}
# Smoke step: a broken bundled config (or a failing inline rule test) fails the build, and the
# handler's import-time cold start compiles every rule once more.
RUN if [ -f /tmp/bundle/tattletail.toml ]; then \
        cp /tmp/bundle/tattletail.toml ./tattletail.toml \
        && python -m tattletail validate --config tattletail.toml \
        && TATTLETAIL_EAGER_INIT=1 TATTLETAIL_WORKERS=1 python -c "import tattletail.lambda_handler"; \
    fi \
    && rm -rf /tmp/bundle \
    && python -c "import tattletail.lambda_handler"
CMD ["tattletail.lambda_handler.handler"]
