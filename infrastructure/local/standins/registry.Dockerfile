# Offline stand-in for the distribution registry image registry:2.8.3, which `cargo xtask local
# up` builds only where that image cannot be pulled. Debian trixie's docker-registry package is
# distribution 2.8.3; it runs like the official image: the same configuration file, port, data
# directory and REGISTRY_* variables. wget is there for the compose health check, as busybox's
# is in the official image.
ARG BASE=python:3.13-slim
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends docker-registry wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/docker/registry /var/lib/registry \
 && printf '%s\n' 'version: 0.1' 'log:' '  fields:' '    service: registry' 'storage:' \
      '  cache:' '    blobdescriptor: inmemory' '  filesystem:' '    rootdirectory: /var/lib/registry' \
      'http:' '  addr: :5000' '  headers:' '    X-Content-Type-Options: [nosniff]' \
      > /etc/docker/registry/config.yml
LABEL xtask.local-stack.stand-in=true
EXPOSE 5000
VOLUME /var/lib/registry
ENTRYPOINT ["docker-registry", "serve"]
CMD ["/etc/docker/registry/config.yml"]
