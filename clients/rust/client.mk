# Rust client (clients/rust): crates from Cargo.lock (setup-rust fetches them), clippy
# -D warnings + rustfmt, and `cargo test`, whose tests start a real broker (JOBWIRE_PYTHON).
# build.rs generates the stubs with tonic-build and the protoc of the protoc-bin-vendored
# crate; nothing generated is checked in.
RUST_CLIENT_DIR := clients/rust
CLIENT_SETUP += setup-rust
CLIENT_LINT += lint-rust
CLIENT_TEST += test-rust

.PHONY: setup-rust lint-rust test-rust

setup-rust:
	cd $(RUST_CLIENT_DIR) && cargo fetch --locked

lint-rust: setup-rust
	cd $(RUST_CLIENT_DIR) && cargo fmt --check
	cd $(RUST_CLIENT_DIR) && cargo clippy --locked --all-targets -- -D warnings

test-rust: setup setup-rust
	cd $(RUST_CLIENT_DIR) && JOBWIRE_PYTHON="$${JOBWIRE_PYTHON:-$(CURDIR)/.venv/bin/python}" cargo test --locked
