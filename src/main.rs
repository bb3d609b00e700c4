//! The `drover` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    drover::cli::main()
}
