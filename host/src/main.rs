//! The `culvert` binary: see [`culvert::cli`].

fn main() {
    std::process::exit(culvert::cli::main());
}
