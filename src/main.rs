//! The `ficus` command line: run | check | explain | demo.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ficus",
    version,
    about = "API gateway and strangler-fig facade for a legacy monolith"
)]
struct Cli {
    /// The routes file (for `run`, the default command).
    #[arg(long, short = 'c', global = true, default_value = "routes.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run {
        /// Once every listener accepts, write the actual listening addresses here as JSON:
        /// {"listeners":["127.0.0.1:PORT",...],"admin":"127.0.0.1:PORT"}. With port 0 in
        /// the config this is how to learn the ports the system chose.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
    /// Validate a routes file: exit 0 clean, 1 warnings only, 2 errors.
    Check {
        /// The file to check (defaults to --config).
        file: Option<PathBuf>,
    },
    /// Show which route a request would take, and why.
    Explain {
        /// HTTP method, e.g. GET.
        method: String,
        /// Full URL or path, e.g. http://shop.example/orders/42.
        url: String,
        /// Request header, 'Name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
    },
    /// Start a sample monolith and a new service on loopback with the gateway in front.
    Demo {
        /// As for `run`: where to write the gateway's listening addresses once it is ready.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { ready_file: None }) {
        Command::Run { ready_file } => {
            let cfg = match ficus::config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            ficus::logging::init(cfg.gateway.access_log == ficus::config::AccessLog::Json);
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            let ready_file = ready_file.map(|path| ficus::sockets::ReadyFile { path });
            match ficus::server::run(cfg, ready_file, |_| {}) {
                Ok(()) => {
                    ficus::logging::flush();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { file } => {
            let (code, report) = ficus::cli::check(file.as_ref().unwrap_or(&cli.config));
            print!("{report}");
            ExitCode::from(code as u8)
        }
        Command::Explain {
            method,
            url,
            headers,
        } => match ficus::cli::explain(&cli.config, &method, &url, &headers) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Demo { ready_file } => {
            ficus::logging::init(false);
            let ready_file = ready_file.map(|path| ficus::sockets::ReadyFile { path });
            match ficus::demo::run(&cli.config, ready_file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
