//! Settings for a service binary, from three sources.
//!
//! Each service describes its settings once, as a `clap::Parser` struct with a doc
//! comment and a default per field. [`load`] gives every setting an environment
//! variable `MLOPS_<SERVICE>_<SETTING>` and accepts an optional TOML file
//! (`--config FILE` or `MLOPS_<SERVICE>_CONFIG`) whose keys are the setting names.
//! Precedence: command line, then environment, then file, then the default. So
//! `--help` lists every setting with its variable and default, and an unknown key in
//! the file is an error rather than a silently ignored typo.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, Command, FromArgMatches};

/// A settings problem, reported before the service starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line or environment was not accepted (also `--help`).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or names an unknown setting.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid setting {setting}: {message}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// The prefix of a service's environment variables: `MLOPS_TRACKING_`.
pub fn env_prefix(service: &str) -> String {
    format!("MLOPS_{}_", service.to_uppercase().replace('-', "_"))
}

/// Parses `T` from `args` (the first is the program name), the environment and an
/// optional config file, for the service `service`.
pub fn load<T, I, A>(service: &str, args: I) -> Result<T, ConfigError>
where
    T: clap::CommandFactory + FromArgMatches,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let prefix = env_prefix(service);
    let mut cmd = with_env_names(T::command(), &prefix).arg(
        Arg::new("config")
            .long("config")
            .env(format!("{prefix}CONFIG"))
            .value_name("FILE")
            .help("TOML file of settings (keys are the setting names in snake_case); the environment wins over it"),
    );
    if let Some(path) = config_path(&args, &prefix) {
        cmd = apply_file(cmd, &path)?;
    }
    let matches = cmd.try_get_matches_from(args)?;
    Ok(T::from_arg_matches(&matches)?)
}

/// Gives every argument of `cmd` the environment variable `<prefix><ID>`.
fn with_env_names(cmd: Command, prefix: &str) -> Command {
    cmd.mut_args(|arg| {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" || arg.get_env().is_some() {
            return arg;
        }
        let name = format!("{prefix}{}", id.to_uppercase().replace('-', "_"));
        // --help must not print a password from a database URL or a token.
        arg.env(name).hide_env_values(true)
    })
}

/// Finds `--config FILE` / `--config=FILE` on the command line, else the environment.
fn config_path(args: &[OsString], prefix: &str) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os(format!("{prefix}CONFIG")).map(PathBuf::from)
}

/// Makes the file's values the defaults of the matching arguments.
fn apply_file(mut cmd: Command, path: &Path) -> Result<Command, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })?;
    let known: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != "help" && id != "version" && id != "config")
        .collect();
    for (key, value) in table {
        if !known.contains(&key) {
            return Err(ConfigError::File {
                path: path.to_owned(),
                message: format!(
                    "unknown setting `{key}`; known settings: {}",
                    known.join(", ")
                ),
            });
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    message: format!(
                        "setting `{key}` must be a string, number or boolean, found {}",
                        other.type_str()
                    ),
                })
            }
        };
        cmd = cmd.mut_arg(&key, |a| a.default_value(value));
    }
    Ok(cmd)
}

/// Where a service listens: its API and its admin port. Flattened into each
/// service's config (inside [`ServerArgs`] for gRPC services); the service gives
/// both their defaults with
/// `#[command(mut_arg("listen_addr", |a| a.default_value("0.0.0.0:50051")))]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Address of the service's API.
    #[arg(long, required = false)]
    pub listen_addr: String,
    /// Address of the admin HTTP port (/metrics, /healthz, /readyz).
    #[arg(long, required = false)]
    pub admin_addr: String,
}

impl ListenArgs {
    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, addr) in [
            ("listen_addr", &self.listen_addr),
            ("admin_addr", &self.admin_addr),
        ] {
            if addr.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    setting,
                    message: "must be an address like 0.0.0.0:50051".into(),
                });
            }
        }
        Ok(())
    }

    /// Other addresses (one process, tests).
    pub fn set(&mut self, listen_addr: &str, admin_addr: &str) {
        self.listen_addr = listen_addr.to_owned();
        self.admin_addr = admin_addr.to_owned();
    }
}

/// The settings every gRPC server shares: its ports, its message limit, its
/// concurrency and its tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Where it listens.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Bearer tokens as token:role pairs, comma separated (roles reader, writer, admin); empty turns auth off.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub auth_tokens: crate::auth::Tokens,
    /// Largest gRPC request message in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Concurrent requests per client connection before new ones wait.
    #[arg(long, default_value_t = 256)]
    pub max_concurrent_per_connection: usize,
}

impl ServerArgs {
    /// The largest request the service decodes.
    pub fn decoding_limit(&self) -> usize {
        self.max_message_bytes
    }

    /// The largest answer it encodes: never below what clients accept by default
    /// ([`crate::client::MAX_MESSAGE_BYTES`]), so a page of results is not cut.
    pub fn encoding_limit(&self) -> usize {
        self.max_message_bytes.max(crate::client::MAX_MESSAGE_BYTES)
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen.validate()?;
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid {
                setting: "max_message_bytes",
                message: "must be at least 1024".into(),
            });
        }
        if self.max_concurrent_per_connection == 0 {
            return Err(ConfigError::Invalid {
                setting: "max_concurrent_per_connection",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// A service's settings, as the kit needs to see them: its name (for
/// `MLOPS_<NAME>_*` and the file) and its checks.
pub trait ServiceConfig: clap::Parser + Clone + Send + Sync + 'static {
    /// The service's short name: `tracking`.
    const NAME: &'static str;

    /// Checks every setting: the shared structs' `validate`, then the service's own.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Loads the settings from `args`, the environment and an optional file, and checks them.
    fn load<I, A>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString> + Clone,
    {
        let c: Self = load(Self::NAME, args)?;
        c.validate()?;
        Ok(c)
    }

    /// The settings with nothing given: the environment, the file it names, the
    /// defaults. Falls back to the defaults alone when the environment holds a value
    /// the service refuses (callers that must refuse it call [`ServiceConfig::load`]).
    fn defaults() -> Self {
        let program = format!("mlops-{}", Self::NAME);
        Self::load([program.clone()]).unwrap_or_else(|_| Self::parse_from([program]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Demo {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:1")]
        listen_addr: String,
        /// Pool size.
        #[arg(long, default_value_t = 4)]
        max_connections: u32,
    }

    #[test]
    fn defaults_file_and_flags_in_order() {
        let d: Demo = load("cfgtest-a", ["x"]).unwrap();
        assert_eq!(d.listen_addr, "127.0.0.1:1");
        assert_eq!(d.max_connections, 4);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "max_connections = 9\nlisten_addr = \"0.0.0.0:2\"\n").unwrap();
        let f = file.to_str().unwrap();
        let d: Demo = load("cfgtest-a", ["x", "--config", f]).unwrap();
        assert_eq!(
            (d.listen_addr.as_str(), d.max_connections),
            ("0.0.0.0:2", 9)
        );
        let d: Demo = load("cfgtest-a", ["x", "--config", f, "--max-connections", "3"]).unwrap();
        assert_eq!(d.max_connections, 3);
    }

    #[derive(Debug, Parser)]
    #[command(
        mut_arg("listen_addr", |a| a.default_value("0.0.0.0:7")),
        mut_arg("admin_addr", |a| a.default_value("0.0.0.0:8"))
    )]
    struct WithServer {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn a_flattened_server_takes_the_services_defaults_and_checks_them() {
        let c: WithServer = load("cfgtest-c", ["x"]).unwrap();
        assert_eq!(c.server.listen.listen_addr, "0.0.0.0:7");
        assert_eq!(c.server.listen.admin_addr, "0.0.0.0:8");
        assert_eq!(c.server.max_message_bytes, 16 * 1024 * 1024);
        assert!(c.server.validate().is_ok());
        let c: WithServer = load("cfgtest-c", ["x", "--max-message-bytes", "10"]).unwrap();
        let err = c.server.validate().unwrap_err().to_string();
        assert!(err.contains("max_message_bytes"), "{err}");
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "max_conections = 9\n").unwrap();
        let err =
            load::<Demo, _, _>("cfgtest-b", ["x", "--config", file.to_str().unwrap()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown setting `max_conections`"), "{msg}");
        assert!(msg.contains("max_connections"), "{msg}");
    }

    #[test]
    fn help_names_every_environment_variable() {
        let cmd = with_env_names(Demo::command(), &env_prefix("cfg-test"));
        let help = cmd.clone().render_long_help().to_string();
        assert!(help.contains("MLOPS_CFG_TEST_LISTEN_ADDR"), "{help}");
        assert!(help.contains("MLOPS_CFG_TEST_MAX_CONNECTIONS"), "{help}");
        assert!(cmd
            .get_arguments()
            .all(|a| a.get_id() == "help" || a.is_hide_env_values_set()));
    }
}
