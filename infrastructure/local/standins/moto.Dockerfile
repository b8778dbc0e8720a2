# Offline stand-in for motoserver/moto:5.2.2, which `cargo xtask local up` builds only where that
# image cannot be pulled: moto 5.2.2 with its server from PyPI, started like the official image.
ARG BASE=python:3.13-slim
FROM ${BASE}
RUN pip install --no-cache-dir --disable-pip-version-check "moto[server]==5.2.2"
LABEL xtask.local-stack.stand-in=true
EXPOSE 5000
ENTRYPOINT ["moto_server", "-H", "0.0.0.0"]
