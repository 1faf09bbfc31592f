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
    Run,
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
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
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
            match ficus::server::run(cfg, |_| {}) {
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
        Command::Demo => {
            ficus::logging::init(false);
            match ficus::demo::run(&cli.config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
