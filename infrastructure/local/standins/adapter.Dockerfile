# Offline stand-in for public.ecr.aws/awsguru/aws-lambda-adapter:0.9.1, which `cargo xtask local
# up` builds only where that image cannot be pulled: the adapter is the Rust crate
# lambda_web_adapter 0.9.1 (binary `lambda-adapter`), built with Debian's cargo and copied,
# like the official image, alone into an empty image. Its binary links glibc, which the
# function images (python:3.13-slim) have.
ARG BASE=python:3.13-slim
FROM ${BASE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cargo \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install lambda_web_adapter --version 0.9.1 --locked --root /out

FROM scratch
LABEL xtask.local-stack.stand-in=true
COPY --from=build /out/bin/lambda-adapter /lambda-adapter
ENTRYPOINT ["/lambda-adapter"]
