#!/bin/sh
# As the real base image's entrypoint does when AWS_LAMBDA_RUNTIME_API is set: run the runtime
# interface client on the handler given as CMD, from the task root.
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    echo "lambda-entrypoint: AWS_LAMBDA_RUNTIME_API is not set (this stand-in has no emulator)" >&2
    exit 64
fi
if [ $# -ne 1 ]; then
    echo "lambda-entrypoint: the handler must be the only argument" >&2
    exit 142
fi
export _HANDLER="$1"
cd "${LAMBDA_TASK_ROOT}" || exit 1
exec python -m awslambdaric "$@"
