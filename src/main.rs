//! The `ocipush` command: build a Dockerfile and push the image. Maps [`cli::run`] to an exit
//! code: 0 success, 1 failure (one clear message on stderr), 2 usage error.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
