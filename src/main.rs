//! The `ficus` command line: run | check | explain | demo | shadow | status.

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
    /// `run`'s options, for `ficus` without a command.
    #[command(flatten)]
    run: RunOptions,
}

/// Options of `run` and `demo`.
#[derive(clap::Args, Clone, Default)]
struct RunOptions {
    /// Once every listener accepts, write the actual listening addresses here as JSON:
    /// {"admin":"127.0.0.1:PORT","listeners":["127.0.0.1:PORT",...]}. With port 0 in the
    /// config this is how to learn the ports the system chose.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// The unix socket of binary upgrades (the same for the old and the new process). With
    /// it, SIGQUIT hands the listening sockets to a `ficus run --upgrade` process waiting
    /// here, then drains; without it, SIGQUIT drains like SIGTERM. See docs/operations.md.
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<PathBuf>,
    /// Take the listening sockets over from the running ficus (binary upgrade): wait at
    /// --upgrade-socket for it, then send it SIGQUIT.
    #[arg(long, requires = "upgrade_socket")]
    upgrade: bool,
}

impl RunOptions {
    /// These options, with those not given taken from `fallback`.
    fn or(self, fallback: RunOptions) -> RunOptions {
        RunOptions {
            ready_file: self.ready_file.or(fallback.ready_file),
            upgrade_socket: self.upgrade_socket.or(fallback.upgrade_socket),
            upgrade: self.upgrade || fallback.upgrade,
        }
    }

    fn upgrade(&self) -> ficus::server::UpgradeOptions {
        ficus::server::UpgradeOptions {
            socket: self.upgrade_socket.clone(),
            take_over: self.upgrade,
        }
    }

    fn ready_file(self) -> Option<ficus::sockets::ReadyFile> {
        self.ready_file
            .map(|path| ficus::sockets::ReadyFile { path })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run(RunOptions),
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
    Demo(RunOptions),
    /// Show a shadowed route's comparison record from the running gateway.
    Shadow {
        /// The route's name.
        route: String,
        /// The gateway's admin listener (default: `[gateway] admin` of --config).
        #[arg(long, value_name = "HOST:PORT")]
        admin: Option<String>,
    },
    /// Show the migration board of a running gateway: how much traffic the legacy still
    /// serves, per route and in total.
    Status {
        /// The gateway's admin listener (default: `[gateway] admin` of --config, else 127.0.0.1:9901).
        #[arg(long, value_name = "HOST:PORT")]
        admin: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        None => Command::Run(cli.run),
        // `ficus --ready-file PATH run` means the same as `ficus run --ready-file PATH`.
        Some(Command::Run(opts)) => Command::Run(opts.or(cli.run)),
        Some(Command::Demo(opts)) => Command::Demo(opts.or(cli.run)),
        Some(_) if cli.run.ready_file.is_some() => {
            eprintln!("error: --ready-file is an option of `run` and `demo`");
            return ExitCode::from(2);
        }
        Some(_) if cli.run.upgrade_socket.is_some() => {
            eprintln!("error: --upgrade and --upgrade-socket are options of `run`");
            return ExitCode::from(2);
        }
        Some(other) => other,
    };
    match command {
        Command::Run(opts) => {
            ficus::signals::hold_hangups();
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
            let upgrade = opts.upgrade();
            match ficus::server::run_upgradable(cfg, opts.ready_file(), upgrade, |_| {}) {
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
            print_out(&report);
            ExitCode::from(code as u8)
        }
        Command::Explain {
            method,
            url,
            headers,
        } => match ficus::cli::explain(&cli.config, &method, &url, &headers) {
            Ok(out) => {
                print_out(&out);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Shadow { route, admin } => shown(
            ficus::cli::admin_client::admin_addr(admin.as_deref(), &cli.config)
                .and_then(|addr| ficus::cli::shadow(addr, &route)),
        ),
        Command::Status { admin } => shown(
            ficus::cli::admin_client::admin_addr(admin.as_deref(), &cli.config)
                .and_then(ficus::cli::status::status),
        ),
        Command::Demo(opts) => {
            ficus::signals::hold_hangups();
            if opts.upgrade_socket.is_some() {
                eprintln!("error: --upgrade and --upgrade-socket are options of `run`");
                return ExitCode::from(2);
            }
            ficus::logging::init(false);
            match ficus::demo::run(&cli.config, opts.ready_file()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// A command that reads the running gateway: its report, or its error and exit code 2.
fn shown(result: Result<String, ficus::cli::admin_client::AdminError>) -> ExitCode {
    match result {
        Ok(out) => {
            print_out(&out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Writes a command's report to stdout. A reader that stops early (`ficus check | head`)
/// is not an error worth a panic.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}
