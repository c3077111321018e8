//! `logsync-server`.
fn main() {
    eprintln!("logsync-server: not built yet");
    std::process::exit(1);
}
