# syntax=docker/dockerfile:1
# identity: a static-ish Rust binary on distroless. Build: docker build -t identity .
# The build steps are the ones .ci/run proves with cargo: `cargo build --release --locked`.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies first: this layer is reused until Cargo.toml or Cargo.lock change.
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin identity

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /app/target/release/identity /usr/local/bin/identity
USER 65532:65532
EXPOSE 50051 8080
ENTRYPOINT ["/usr/local/bin/identity"]
CMD ["serve"]
