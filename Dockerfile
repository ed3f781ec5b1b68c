# The one image every Deployment in deploy/kubernetes runs: the `obol` binary alone.
#   docker build -t obol-stack:dev .
# Build: Debian bookworm's Rust image at the workspace's toolchain; runtime: distroless cc
# (glibc, libgcc, CA certificates; no shell, no package manager), as uid 65532 (nonroot).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# Contract artifacts compiled into the binary (the devnet's deployments).
COPY contracts/artifacts contracts/artifacts
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p obol \
    && install -D -m 0755 target/release/obol /out/obol

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/obol /usr/local/bin/obol
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/obol"]
CMD ["--help"]
