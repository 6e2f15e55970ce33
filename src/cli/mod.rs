//! The `datacamp` command-line tool: operators list, verify, inspect, read and clean up
//! backups from a shell, on machines without the application or a JVM.
//!
//! Every command calls the library's operations ([`datacamp::ops`]) — the same code the
//! Clojure API runs over JNI — and renders their typed results: human tables
//! ([`render`]), `--json` (serde_json of the same structs) or `--edn` (the maps the Clojure
//! API returns, from `jni::convert`). Progress goes to stderr ([`progress`]), only on a
//! terminal.
//!
//! ```text
//! mod.rs       arguments (clap), dispatch, output forms, exit codes
//! target.rs    --target: a directory or s3://bucket/prefix/ (+ --endpoint/--region/…)
//! render.rs    human tables and summaries
//! json.rs      datoms as JSON lines (cat)
//! progress.rs  a Store decorator that advances a bar per chunk read
//! ```
//!
//! Adding a command is one [`Command`] variant and one function that calls an `ops`
//! operation: `prune` calls `ops::prune`, the code behind the Clojure API's
//! `prune-backups` — never a second implementation here.

mod json;
mod progress;
mod render;
mod target;

use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use datacamp::chain::retention::Policy;
use datacamp::codec::edn;
use datacamp::crypto::envelope::KeySpec;
use datacamp::jni::convert;
use datacamp::ops::prune::{self, PruneOptions};
use datacamp::ops::{cleanup, inspect, list, verify};
use datacamp::store::Store;
use datacamp::{Error, ErrorKind};
use serde::Serialize;

use target::{S3Flags, Target};

/// Exit status: success (and, for verify and inspect, a complete and intact backup).
pub const EXIT_OK: i32 = 0;
/// Exit status: problems found (verify found some, inspect found the backup incomplete,
/// a chunk failed its check while being read).
pub const EXIT_PROBLEMS: i32 = 1;
/// Exit status: usage or access error (bad arguments, no such directory, database or
/// backup, the store refused the credentials or could not be reached).
pub const EXIT_ERROR: i32 = 2;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (verify, inspect: the backup is complete and intact)
  1  problems found (verify found some; inspect: the backup is incomplete; a chunk failed
     its size/SHA-256 check while being read)
  2  usage or access error (bad arguments; no such directory, database or backup; the
     store refused the credentials or could not be reached)

Targets: a directory, or s3://BUCKET/PREFIX/ (the Clojure API's default prefix is
datahike-backups/). S3 credentials come from the AWS provider chain: environment
variables, ~/.aws profiles (--profile or AWS_PROFILE), web identity, ECS/EC2 roles.";

/// `datacamp`: inspect and maintain Datacamp backups of Datahike databases.
#[derive(Debug, Parser)]
#[command(
    name = "datacamp",
    version,
    about = "Inspect and maintain Datacamp backups of Datahike databases (no JVM needed)",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Where the backups are: a directory, or s3://BUCKET/PREFIX/
    #[arg(
        short,
        long,
        env = "DATACAMP_TARGET",
        hide_env_values = true,
        global = true,
        value_name = "DIR|S3-URL"
    )]
    target: Option<String>,
    /// S3-compatible endpoint (host:port or URL; MinIO, moto, …)
    #[arg(long, global = true, value_name = "HOST:PORT|URL")]
    endpoint: Option<String>,
    /// AWS region (default: from the environment or the profile)
    #[arg(long, global = true)]
    region: Option<String>,
    /// Path-style S3 addressing (the default with --endpoint)
    #[arg(long, global = true)]
    path_style: bool,
    /// AWS profile for the credentials and region (as AWS_PROFILE)
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Print JSON (for scripts)
    #[arg(long, global = true, conflicts_with = "edn")]
    json: bool,
    /// Print EDN: the maps the Clojure API returns
    #[arg(long, global = true)]
    edn: bool,
    /// No progress bars on stderr
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List a database's backups, newest first (incomplete ones included)
    List {
        /// The database id (the backups' folder name)
        database_id: String,
    },
    /// Check that every chunk is present with its size and SHA-256 (--deep: decode them too)
    Verify {
        /// The database id
        database_id: String,
        /// The backup id
        backup_id: String,
        /// Also decode every chunk and check its datom count
        #[arg(long)]
        deep: bool,
        /// An encrypted backup's key (--deep): a file holding the 32 bytes or their base64
        #[arg(long, value_name = "PATH", conflicts_with = "key_env")]
        key_file: Option<String>,
        /// An encrypted backup's key (--deep): an environment variable holding its base64
        #[arg(long, value_name = "VAR")]
        key_env: Option<String>,
    },
    /// Show a backup: manifest summary, chunks, tx and time range, chain
    Inspect {
        /// The database id
        database_id: String,
        /// The backup id
        backup_id: String,
    },
    /// Print a backup's datoms, one per line ([e a v tx added]), each chunk checked first
    Cat {
        /// The database id
        database_id: String,
        /// The backup id
        backup_id: String,
        /// Only this chunk (its id, from 0)
        #[arg(long, value_name = "N")]
        chunk: Option<u64>,
        /// Line format (default: edn, or json with --json)
        #[arg(long, value_enum)]
        format: Option<DatomFormat>,
        /// An encrypted backup's key: a file holding the 32 bytes or their base64
        #[arg(long, value_name = "PATH", conflicts_with = "key_env")]
        key_file: Option<String>,
        /// An encrypted backup's key: an environment variable holding its base64
        #[arg(long, value_name = "VAR")]
        key_env: Option<String>,
    },
    /// Remove incomplete backups whose last activity is older than --older-than
    CleanupIncomplete {
        /// The database id
        database_id: String,
        /// Age of the last activity (24h, 90m, 7d, …)
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
        older_than: Duration,
    },
    /// Delete the complete backups no retention rule keeps (a dry run unless --apply)
    Prune {
        /// The database id
        database_id: String,
        /// Keep the N newest backups
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: u32,
        /// Keep the newest backup of each of the N most recent days with one (UTC)
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_daily: u32,
        /// Keep the newest backup of each of the N most recent ISO weeks with one
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_weekly: u32,
        /// Keep the newest backup of each of the N most recent months with one
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_monthly: u32,
        /// Delete for real (without it, only report what would be deleted)
        #[arg(long)]
        apply: bool,
    },
}

/// How `cat` writes a datom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DatomFormat {
    /// `[17 :person/name "Ada" 536870913 true]`
    Edn,
    /// `{"e":17,"a":":person/name","v":"Ada","tx":536870913,"added":true}`
    Json,
}

/// The output form of results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Human,
    Json,
    Edn,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (write e.g. 24h, 90m, 7d)"))
}

/// What a command produced: its text for stdout, and whether it found problems.
struct Outcome {
    text: String,
    problems: bool,
}

impl Outcome {
    fn ok(text: String) -> Outcome {
        Outcome {
            text,
            problems: false,
        }
    }
}

/// An error as `--json` prints it.
#[derive(Serialize)]
struct ErrorReport<'a> {
    kind: &'static str,
    op: &'a str,
    message: &'a str,
    key: Option<&'a str>,
    hint: Option<&'a str>,
}

/// The exit status for an error: a failed check of stored bytes is a problem found (1);
/// everything else is a usage or access error (2).
fn exit_code(e: &Error) -> i32 {
    match e.kind {
        ErrorKind::Corrupt => EXIT_PROBLEMS,
        _ => EXIT_ERROR,
    }
}

fn report_error(e: &Error, output: Output) -> i32 {
    match output {
        Output::Json => {
            let r = ErrorReport {
                kind: e.kind.keyword(),
                op: &e.op,
                message: &e.message,
                key: e.key.as_deref(),
                hint: e.hint.as_deref(),
            };
            println!(
                "{}",
                serde_json::json!({ "error": serde_json::to_value(r).unwrap_or_default() })
            );
        }
        Output::Edn => {
            let v = datacamp::model::kw_map([
                (
                    "datacamp/error",
                    datacamp::model::Value::Keyword(datacamp::model::Name::new(
                        Some("datacamp"),
                        e.kind.keyword(),
                    )),
                ),
                ("datacamp/op", datacamp::model::Value::str(&e.op)),
                ("message", datacamp::model::Value::str(&e.message)),
            ]);
            println!("{}", edn::write(&v));
        }
        Output::Human => {}
    }
    eprintln!("datacamp: {e}");
    exit_code(e)
}

/// Run the CLI on the process's arguments; return the exit status.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
        }
    };
    let output = if cli.json {
        Output::Json
    } else if cli.edn {
        Output::Edn
    } else {
        Output::Human
    };
    match execute(&cli, output) {
        Ok(outcome) => {
            let mut out = io::stdout().lock();
            if let Err(e) = out
                .write_all(outcome.text.as_bytes())
                .and_then(|_| out.flush())
            {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    eprintln!("datacamp: cannot write the output: {e}");
                    return EXIT_ERROR;
                }
            }
            if outcome.problems {
                EXIT_PROBLEMS
            } else {
                EXIT_OK
            }
        }
        Err(e) => report_error(&e, output),
    }
}

fn json_text<T: Serialize + ?Sized>(v: &T) -> Result<String, Error> {
    let mut s = serde_json::to_string_pretty(v)
        .map_err(|e| Error::internal("write JSON", e.to_string()))?;
    s.push('\n');
    Ok(s)
}

fn edn_text(v: &datacamp::model::Value) -> String {
    edn::write_pretty(v)
}

fn execute(cli: &Cli, output: Output) -> Result<Outcome, Error> {
    let Some(target_text) = &cli.target else {
        return Err(Error::invalid(
            "read arguments",
            "no target: pass --target DIR|s3://BUCKET/PREFIX/ (or set DATACAMP_TARGET)",
        ));
    };
    let target = Target::parse(target_text)?;
    if let Some(profile) = &cli.profile {
        // The AWS provider chain reads the profile from here (nothing has started threads).
        std::env::set_var("AWS_PROFILE", profile);
    }
    let flags = S3Flags {
        endpoint: cli.endpoint.clone(),
        region: cli.region.clone(),
        path_style: cli.path_style,
    };
    let store = target.open(&flags)?;
    match &cli.command {
        Command::List { database_id } => list_cmd(&store, &target, database_id, output),
        Command::Verify {
            database_id,
            backup_id,
            deep,
            key_file,
            key_env,
        } => {
            let key = key_arg(key_file, key_env, "verify backup")?;
            verify_cmd(
                store,
                database_id,
                backup_id,
                *deep,
                key.as_ref(),
                output,
                cli.quiet,
            )
        }
        Command::Inspect {
            database_id,
            backup_id,
        } => inspect_cmd(&store, database_id, backup_id, output),
        Command::Cat {
            database_id,
            backup_id,
            chunk,
            format,
            key_file,
            key_env,
        } => {
            let format = format.unwrap_or(if output == Output::Json {
                DatomFormat::Json
            } else {
                DatomFormat::Edn
            });
            let key = key_arg(key_file, key_env, "read chunk")?;
            cat_cmd(
                store,
                database_id,
                backup_id,
                *chunk,
                format,
                key.as_ref(),
                cli.quiet,
            )
        }
        Command::CleanupIncomplete {
            database_id,
            older_than,
        } => cleanup_cmd(&store, database_id, *older_than, output),
        Command::Prune {
            database_id,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            apply,
        } => {
            let policy = Policy {
                keep_last: *keep_last,
                keep_daily: *keep_daily,
                keep_weekly: *keep_weekly,
                keep_monthly: *keep_monthly,
            };
            prune_cmd(&store, database_id, policy, !*apply, output)
        }
    }
}

fn list_cmd(
    store: &Arc<dyn Store>,
    target: &Target,
    database_id: &str,
    output: Output,
) -> Result<Outcome, Error> {
    let summaries = list::list(store.as_ref(), database_id)?;
    let text = match output {
        Output::Json => json_text(&summaries.iter().map(|s| s.listing()).collect::<Vec<_>>())?,
        Output::Edn => edn_text(&convert::summaries(&summaries)),
        Output::Human => {
            let listings: Vec<_> = summaries.iter().map(|s| s.listing()).collect();
            let mut text = render::listing(database_id, &target.describe(), &listings);
            if listings.is_empty() {
                if let Target::S3 { bucket, prefix } = target {
                    if prefix.is_empty() {
                        text.push_str(&format!(
                            "(the Clojure API's default prefix is datahike-backups/: try s3://{bucket}/datahike-backups/)\n"
                        ));
                    }
                }
            }
            text
        }
    };
    Ok(Outcome::ok(text))
}

fn verify_cmd(
    store: Arc<dyn Store>,
    database_id: &str,
    backup_id: &str,
    deep: bool,
    key: Option<&KeySpec>,
    output: Output,
    quiet: bool,
) -> Result<Outcome, Error> {
    let total = inspect::chunks(store.as_ref(), database_id, backup_id)?.len() as u64;
    let bar = progress::bar(total, "verifying", quiet);
    let counted = progress::Counting::wrap(store, bar.clone());
    let report = verify::verify(counted.as_ref(), database_id, backup_id, deep, key);
    bar.finish_and_clear();
    let report = report?;

    /// The report with its verdict, as `--json` prints it.
    #[derive(Serialize)]
    struct Verdict<'a> {
        success: bool,
        #[serde(flatten)]
        report: &'a verify::VerifyReport,
    }
    let text = match output {
        Output::Json => json_text(&Verdict {
            success: report.success(),
            report: &report,
        })?,
        Output::Edn => edn_text(&convert::verify_report(&report)),
        Output::Human => render::verify(&report),
    };
    Ok(Outcome {
        text,
        problems: !report.success(),
    })
}

fn inspect_cmd(
    store: &Arc<dyn Store>,
    database_id: &str,
    backup_id: &str,
    output: Output,
) -> Result<Outcome, Error> {
    let i = inspect::inspect(store.as_ref(), database_id, backup_id)?;
    let text = match output {
        Output::Json => json_text(&i)?,
        Output::Edn => edn_text(&convert::inspection(&i)),
        Output::Human => render::inspection(&i),
    };
    Ok(Outcome {
        text,
        problems: !i.complete,
    })
}

/// The key given by `--key-file` or `--key-env`, read by the library as the Clojure API's
/// `:encryption` option is (`None` when neither is given).
fn key_arg(
    key_file: &Option<String>,
    key_env: &Option<String>,
    op: &'static str,
) -> Result<Option<KeySpec>, Error> {
    let source = match (key_file, key_env) {
        (Some(path), _) => Some(("key-file", path)),
        (None, Some(var)) => Some(("key-env", var)),
        (None, None) => None,
    };
    Ok(source
        .map(|(k, v)| {
            let options = edn::parse(&format!(
                "{{:encryption {{:{k} {}}}}}",
                edn::write(&datacamp::model::Value::str(v))
            ))?;
            KeySpec::from_options(&options, op)
        })
        .transpose()?
        .flatten())
}

fn cat_cmd(
    store: Arc<dyn Store>,
    database_id: &str,
    backup_id: &str,
    only: Option<u64>,
    format: DatomFormat,
    key: Option<&KeySpec>,
    quiet: bool,
) -> Result<Outcome, Error> {
    // The key first: an encrypted backup read without it (or with another) stops here.
    let cipher = inspect::cipher(store.as_ref(), database_id, backup_id, key)?;
    let all = inspect::chunks(store.as_ref(), database_id, backup_id)?;
    let chunks: Vec<_> = match only {
        None => all,
        Some(n) => {
            let known = all.len();
            let one: Vec<_> = all.into_iter().filter(|c| c.id == n).collect();
            if one.is_empty() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "read chunk",
                    format!("backup {backup_id} has no chunk {n} (it has {known} chunks, from 0)"),
                ));
            }
            one
        }
    };
    let bar = progress::bar(chunks.len() as u64, "reading", quiet);
    let store = progress::Counting::wrap(store, bar.clone());
    let mut out = BufWriter::new(io::stdout().lock());
    for meta in &chunks {
        let chunk = inspect::read_chunk(
            store.as_ref(),
            database_id,
            backup_id,
            meta,
            cipher.as_deref(),
        );
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                bar.finish_and_clear();
                let _ = out.flush();
                return Err(e);
            }
        };
        for d in &chunk.datoms {
            let line = match format {
                DatomFormat::Edn => edn::write(&d.to_value()),
                DatomFormat::Json => json::datom(d),
            };
            if let Err(e) = writeln!(out, "{line}") {
                bar.finish_and_clear();
                return if e.kind() == io::ErrorKind::BrokenPipe {
                    Ok(Outcome::ok(String::new()))
                } else {
                    Err(Error::new(ErrorKind::Io, "write datoms", e.to_string()))
                };
            }
        }
    }
    bar.finish_and_clear();
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Error::new(ErrorKind::Io, "write datoms", e.to_string()))
        }
        _ => Ok(Outcome::ok(String::new())),
    }
}

fn prune_cmd(
    store: &Arc<dyn Store>,
    database_id: &str,
    policy: Policy,
    dry_run: bool,
    output: Output,
) -> Result<Outcome, Error> {
    if policy.is_empty() {
        return Err(Error::invalid(
            "prune backups",
            "give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly",
        )
        .with_hint("a policy that keeps nothing would delete every backup"));
    }
    let report = prune::prune(
        store.as_ref(),
        database_id,
        &PruneOptions { policy, dry_run },
    )?;
    let text = match output {
        Output::Json => json_text(&report)?,
        Output::Edn => edn_text(&convert::prune_report(&report)),
        Output::Human => render::prune(&report),
    };
    Ok(Outcome::ok(text))
}

fn cleanup_cmd(
    store: &Arc<dyn Store>,
    database_id: &str,
    older_than: Duration,
    output: Output,
) -> Result<Outcome, Error> {
    let report = cleanup::cleanup_incomplete(store.as_ref(), database_id, older_than)?;
    let text = match output {
        Output::Json => json_text(&report)?,
        Output::Edn => edn_text(&convert::cleanup_report(&report)),
        Output::Human => {
            render::cleanup(&report, &humantime::format_duration(older_than).to_string())
        }
    };
    Ok(Outcome::ok(text))
}
