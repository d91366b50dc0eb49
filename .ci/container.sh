# shellcheck shell=bash
# Sourced by .ci/run: build the Lambda container image the way a user does, on a machine that
# cannot pull AWS's base image, for tests/test_container.py to invoke.
#
#   container_install      Docker (Debian's docker.io) and debootstrap, when missing
#   container_daemon_start start dockerd unless one answers; container_daemon_stop stops only
#                          the daemon started here (call it from an EXIT trap)
#   container_build        the stand-in base (cached), then the project's image twice, and
#                          exports TATTLETAIL_CI_BASE_IMAGE, TATTLETAIL_CI_IMAGE_S3 and
#                          TATTLETAIL_CI_IMAGE_BUNDLED for the tests
#
# The stand-in for public.ecr.aws/lambda/python is Debian (debootstrap --variant=minbase) with
# python3, a venv at /var/lang holding AWS's runtime interface client, and the base image's
# task root, environment and entrypoint contract (.ci/lambda-stand-in/). It is tagged by a hash
# of its recipe and of the host's CA bundle, and rebuilt only when one of them changes; the
# project image's dependency layer is reused until pyproject.toml changes.

# The client may lack the buildx plugin; the classic builder works (it prints a deprecation note).
export DOCKER_BUILDKIT=0
CONTAINER_STATE=${CONTAINER_STATE:-/var/tmp/tattletail-ci}
STAND_IN_REPOSITORY=tattletail-ci/lambda-python
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
_dockerd_pid=""
_container_scratch=()

container_install() {
    if command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then
        return
    fi
    mkdir -p "$CONTAINER_STATE"
    echo "installing docker.io and debootstrap (apt-get; its output in $CONTAINER_STATE/apt.log)"
    local started=$SECONDS
    {
        apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
                docker.io debootstrap
    } >"$CONTAINER_STATE/apt.log" 2>&1 || {
        tail -n 20 "$CONTAINER_STATE/apt.log" >&2
        return 1
    }
    echo "installed in $((SECONDS - started)) s"
}

container_daemon_start() {
    if docker info >/dev/null 2>&1; then
        echo "using the Docker daemon that is already running"
        return
    fi
    mkdir -p "$CONTAINER_STATE"
    # A daemon killed without cleanup leaves its pid file, which stops the next one starting.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    dockerd >"$CONTAINER_STATE/dockerd.log" 2>&1 &
    _dockerd_pid=$!
    local waited
    for waited in $(seq 60); do
        if docker info >/dev/null 2>&1; then
            echo "dockerd started (pid $_dockerd_pid) in about $((waited / 2)) s"
            return
        fi
        kill -0 "$_dockerd_pid" 2>/dev/null || break
        sleep 0.5
    done
    echo "dockerd did not start; the end of its log:" >&2
    tail -n 20 "$CONTAINER_STATE/dockerd.log" >&2
    return 1
}

container_daemon_stop() {
    if [ ${#_container_scratch[@]} -gt 0 ]; then
        rm -rf "${_container_scratch[@]}"
    fi
    [ -n "$_dockerd_pid" ] || return 0
    kill "$_dockerd_pid" 2>/dev/null || return 0
    local _
    for _ in $(seq 60); do
        kill -0 "$_dockerd_pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -9 "$_dockerd_pid" 2>/dev/null || true
}

_stand_in_tag() {
    local key
    key=$(cat .ci/lambda-stand-in/* "$HOST_CA_BUNDLE" <(echo "$DEBIAN_SUITE") | sha256sum)
    echo "$STAND_IN_REPOSITORY:${key:0:16}"
}

_build_stand_in() {
    local tag=$1 scratch rootfs_tag started=$SECONDS
    scratch=$(mktemp -d /var/tmp/tattletail-stand-in.XXXXXX)
    _container_scratch+=("$scratch")
    rootfs_tag=tattletail-ci/debian-rootfs:${tag##*:}
    echo "building the stand-in base $tag: debootstrap $DEBIAN_SUITE (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$DEBIAN_SUITE" "$scratch/rootfs" "$DEBIAN_MIRROR" >"$scratch/debootstrap.log" 2>&1 || {
        tail -n 20 "$scratch/debootstrap.log" >&2
        return 1
    }
    tar -C "$scratch/rootfs" -c . | docker import - "$rootfs_tag" >/dev/null
    rm -rf "$scratch/rootfs"
    mkdir "$scratch/context"
    cp .ci/lambda-stand-in/* "$scratch/context/"
    cp "$HOST_CA_BUNDLE" "$scratch/context/host-ca-certificates.crt"
    docker build --build-arg "ROOTFS=$rootfs_tag" -t "$tag" "$scratch/context" \
        >"$scratch/build.log" 2>&1 || {
        tail -n 20 "$scratch/build.log" >&2
        return 1
    }
    docker rmi "$rootfs_tag" >/dev/null
    echo "built the stand-in base in $((SECONDS - started)) s"
    # Older stand-ins (another recipe or CA bundle) are not needed any more.
    docker images "$STAND_IN_REPOSITORY" --format '{{.Repository}}:{{.Tag}}' |
        grep -vxF "$tag" | xargs -r docker rmi >/dev/null || true
}

# The size `docker build` reports for its context, in kB (the classic builder prints it, redrawn
# with carriage returns as it grows).
_context_kb() {
    tr '\r' '\n' <"$1" | awk '/^Sending build context to Docker daemon/ { size = $NF }
        END {
            unit = size; sub(/^[0-9.]+/, "", unit); sub(/[kMG]?B$/, "", size)
            print int(size * (unit == "GB" ? 1048576 : unit == "MB" ? 1024 : unit == "kB" ? 1 : 0.001))
        }'
}

container_build() {
    local base tag log context_kb context started
    base=$(_stand_in_tag)
    if docker image inspect "$base" >/dev/null 2>&1; then
        echo "stand-in base $base: cached"
    else
        _build_stand_in "$base"
    fi
    mkdir -p "$CONTAINER_STATE"
    log=$CONTAINER_STATE/build.log

    started=$SECONDS
    # 1. From the checkout as it is (its virtualenvs included), without a config: proves the
    #    .dockerignore and the CONFIG_SOURCE=s3 path.
    tag=tattletail-ci/tattletail:s3
    docker build --label tattletail-ci=1 --build-arg "BASE_IMAGE=$base" \
        --build-arg CONFIG_SOURCE=s3 -t "$tag" . >"$log" 2>&1 || {
        tail -n 40 "$log" >&2
        return 1
    }
    context_kb=$(_context_kb "$log")
    echo "built $tag in $((SECONDS - started)) s (build context ${context_kb} kB)"
    started=$SECONDS
    if [ "${context_kb:-0}" -gt 20480 ]; then
        echo "the build context is ${context_kb} kB: .dockerignore lets too much in" >&2
        return 1
    fi
    export TATTLETAIL_CI_IMAGE_S3=$tag

    # 2. With the rule pack bundled as tattletail.toml: the build validates it and runs its 153
    #    rule tests. A copy of the checkout, so a tattletail.toml of the user's is never touched.
    context=$(mktemp -d /var/tmp/tattletail-context.XXXXXX)
    _container_scratch+=("$context")
    git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$context"
    cp config/tattletail-pack.toml "$context/tattletail.toml"
    tag=tattletail-ci/tattletail:bundled
    docker build --label tattletail-ci=1 --build-arg "BASE_IMAGE=$base" -t "$tag" \
        "$context" >"$log" 2>&1 || {
        tail -n 40 "$log" >&2
        return 1
    }
    # A build whose every input is unchanged reuses every layer: the check ran for those inputs.
    grep -E '^tattletail.toml: OK|^[0-9]+ tests? of' "$log" | sed 's/^/  build: /' ||
        echo "  build: the config check and rule tests are cached (the same inputs passed before)"
    echo "built $tag in $((SECONDS - started)) s"
    export TATTLETAIL_CI_IMAGE_BUNDLED=$tag
    export TATTLETAIL_CI_BASE_IMAGE=$base
    # Images the tags above replaced, with the layers only they used.
    docker image prune -f --filter label=tattletail-ci=1 >/dev/null
}
