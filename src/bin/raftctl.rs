//! raftctl: the command-line tool of raftkv (see `raftkv::ctl`).

fn main() -> std::process::ExitCode {
    raftkv::ctl::main()
}
