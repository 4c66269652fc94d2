//! `external`: hands batches to a long-lived program that speaks JSON lines, and emits what
//! it answers — custom analytics in any language.
//!
//! # Which programs
//!
//! A manifest names a program (`program`); what that name runs is set in the engine's
//! configuration, never in a manifest (`[[external.programs]]` in `dda.toml`, see
//! [`engine::external`]): the program and its fixed arguments as an `argv` list, started
//! directly with no shell, with an environment of `PATH` plus the configured `env` (whose
//! values are never logged). An unknown name is a configuration error listing the allowed
//! names. Whoever writes manifests can only pick among programs the operator allowed.
//!
//! # Protocol
//!
//! One JSON object per line each way; the engine sends a request and waits for exactly one
//! answer line before sending the next.
//!
//! | the engine sends | when |
//! |---|---|
//! | `{"observations": [o, ...]}` | for each input batch |
//! | `{"watermark": "2018-05-24T15:00:00.000Z"}` | event time passed this instant on every input (RFC 3339; the end of a finite input is not sent as a watermark but as a flush) |
//! | `{"flush": true}` | the input has ended (the instance stops): emit what is held |
//!
//! Each `o` is a flat observation, as the engine reads them elsewhere:
//! `{"name", "dataKindReferenceID"?, "timestamp", "value", ...attributes,
//! "dataSourceManifestReferenceID"}`.
//!
//! The program answers every request with `{"emit": [o, ...], "reject": [{"index": i,
//! "reason": "..."}]}`, both optional (`{}` answers "nothing"). Emitted observations are read
//! like any LiveDataSet or flat observation; without a `dataSourceManifestReferenceID` they
//! are the sink's, without a `name` they are named `outputName`, and without a `timestamp`
//! they are stamped with the wall clock (give one). `reject` sends observation `index` of the
//! request's batch to the dead letters with the reason; only batch answers may reject.
//! Empty lines are ignored; the program's standard error goes to the engine's log, line by
//! line.
//!
//! # Failures
//!
//! - A malformed answer (not JSON, not an object, unknown keys, a bad `emit` or `reject`):
//!   the batch goes to the dead letters with the reason, which quotes the line (truncated);
//!   the program is restarted, since its answers can no longer be matched to requests.
//! - No answer within `timeout`: the program is killed and restarted; the batch goes to the
//!   dead letters.
//! - The program exits or closes its output: it is restarted; the batch goes to the dead
//!   letters with the exit status.
//!
//! Restarts wait a little longer each time (0.1 s, doubling, up to 5 s). More than
//! `maxRestarts` restarts within `restartWindow` fail the instance, so a broken program shows
//! as a failed instance rather than as a stream of dead letters. When the instance stops, the
//! program's standard input is closed after the flush and it has a second to exit before it
//! is killed; a dropped processor kills and reaps its program (no zombies).
//!
//! # State
//!
//! The processor keeps none: the program owns its state (a program that must survive
//! restarts keeps it in a file of its own). `snapshot()` is empty.
//!
//! # Parameters
//!
//! | parameter | type | default | meaning |
//! |---|---|---|---|
//! | `program` | string | required | name of an allowed program in the engine configuration |
//! | `timeout` | duration | the program's configured `timeout`, else `PT10S` | how long one answer may take |
//! | `maxRestarts` | int | 5 | restarts allowed within `restartWindow` before the instance fails |
//! | `restartWindow` | duration | `PT1M` | the window restarts are counted in |
//! | `outputName` | string | the program's name | name of emitted observations that carry none |
//!
//! ([`ExternalConfig`] is the table as a type: its defaults are the ones above.)
//!
//! # Output
//!
//! Whatever the program emits: source, name, timestamp, value, data kind and attributes as
//! it writes them (defaults above). Reading blocks the processor's task for at most `timeout`
//! per request; on the multi-threaded runtime it tells the runtime it blocks, so that other
//! tasks move on.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use engine::codec::{DecodeContext, decode_json, encode_live_data_set};
use engine::external::ExternalProgram;
use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::{Observation, Sym, Timestamp};
use manifests::config::{Config, ConfigError};
use manifests::model::Category;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

#[cfg(test)]
mod tests;

/// The processor type.
pub const KIND: &str = "external";

/// How long an answer may take, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Restarts allowed within the restart window, by default.
pub const DEFAULT_MAX_RESTARTS: i64 = 5;

/// The window restarts are counted in, by default.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The longest answer line read, in bytes; a longer one is malformed.
pub const MAX_LINE: u64 = 16 * 1024 * 1024;

/// Answer lines read ahead of the processor (the reader thread waits beyond this).
const ANSWER_QUEUE: usize = 4;

/// How much of a malformed line a dead-letter reason quotes, in characters.
const QUOTED: usize = 200;

/// The wait before the first restart; it doubles with each restart in the window.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a program that closed its output, or whose input was closed, has to exit by
/// itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<External>());

const fn default_max_restarts() -> i64 {
    DEFAULT_MAX_RESTARTS
}

const fn default_restart_window() -> manifests::config::Duration {
    manifests::config::Duration(DEFAULT_RESTART_WINDOW)
}

/// The parameters of `external`. (`ExternalConfig` of the engine, a different thing, is
/// what the engine's configuration allows.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalConfig {
    /// Name of the program to run, as allowed in the engine configuration
    /// ([[external.programs]] in dda.toml); manifests cannot give commands.
    pub program: String,
    /// How long the program may take to answer one request; default: the program's
    /// configured timeout, else PT10S.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<manifests::config::Duration>,
    /// How many restarts (after a crash, a timeout or a malformed answer) are allowed
    /// within restartWindow before the instance fails.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: i64,
    /// The window restarts are counted in.
    #[serde(default = "default_restart_window")]
    pub restart_window: manifests::config::Duration,
    /// Name of emitted observations that carry none; default: the program's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
}

impl ExternalConfig {
    /// `maxRestarts` as a count.
    ///
    /// # Errors
    ///
    /// A negative number.
    pub fn max_restarts(&self) -> Result<usize, ConfigError> {
        usize::try_from(self.max_restarts).map_err(|_| {
            ConfigError::at(
                "maxRestarts",
                format!(
                    "maxRestarts {}: must be 0 or more (0: fail at the first crash)",
                    self.max_restarts
                ),
            )
        })
    }
}

/// A timeout that is no time at all.
fn no_timeout() -> ConfigError {
    ConfigError::at("timeout", "timeout: must be longer than zero, e.g. PT10S")
}

impl Config for ExternalConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.timeout.is_some_and(|t| t.get().is_zero()) {
            return Err(no_timeout());
        }
        self.max_restarts().map(drop)
    }

    fn example() -> Json {
        json!({"program": "scorer"})
    }
}

/// A running program: its process, its input, and the lines a reader thread took from its
/// output.
struct Running {
    child: Child,
    /// `None` once closed (at the end of input).
    stdin: Option<ChildStdin>,
    /// Answer lines, or why the output could not be read; disconnected at end of output.
    answers: Receiver<Result<String, String>>,
}

/// What went wrong with one request.
#[derive(Debug)]
enum Trouble {
    /// It could not start, exited, or closed its output.
    Crashed(String),
    /// No answer in time.
    TimedOut,
    /// An answer that does not follow the protocol.
    Malformed(String),
}

/// The running processor.
pub struct External {
    /// The APM id, for logs.
    id: String,
    /// What runs, as configured.
    program: ExternalProgram,
    timeout: Duration,
    max_restarts: usize,
    restart_window: Duration,
    output_name: Sym,
    /// The program, once started; `None` until the first request and after a failure.
    running: Option<Running>,
    /// When recent restarts happened (within the restart window).
    restarts: VecDeque<Instant>,
    /// The next start waits until then (backoff).
    not_before: Option<Instant>,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External")
            .field("id", &self.id)
            .field("program", &self.program.name)
            .field("timeout", &self.timeout)
            .field("running", &self.running.as_ref().map(|r| r.child.id()))
            .finish_non_exhaustive()
    }
}

impl ProcessorKind for External {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Runs an external program allowed by the engine configuration, speaking JSON lines: batches, watermarks and the end of input go to it, the observations it answers are emitted.";
    type Config = ExternalConfig;

    /// A processor for the allowed program its `program` parameter names. The program
    /// starts with the first request.
    ///
    /// # Errors
    ///
    /// A program the engine configuration does not allow, or unusable parameters.
    fn new(config: ExternalConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        let name = &config.program;
        let program = ctx.external.program(name).ok_or_else(|| {
            let names = ctx.external.names();
            ProcessorError::config_at(
                "program",
                if names.is_empty() {
                    format!(
                        "program {name:?}: the engine configuration allows no external programs; \
                         add an [[external.programs]] entry named {name:?} to dda.toml \
                         (dda run --config, dda serve --config)"
                    )
                } else {
                    format!(
                        "program {name:?} is not allowed by the engine configuration; allowed: {}",
                        names.join(", ")
                    )
                },
            )
        })?;
        if program.argv.first().is_none_or(|a| a.is_empty()) {
            return Err(ProcessorError::config_at(
                "program",
                format!("program {name:?}: its configured argv is empty"),
            ));
        }
        let timeout = config
            .timeout
            .map(manifests::config::Duration::get)
            .or(program.timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(no_timeout().into());
        }
        Ok(Self {
            id: ctx.id.clone(),
            output_name: Sym::new(config.output_name.as_deref().unwrap_or(name)),
            program: program.clone(),
            timeout,
            max_restarts: config.max_restarts()?,
            restart_window: config.restart_window.get(),
            running: None,
            restarts: VecDeque::new(),
            not_before: None,
        })
    }
}

impl External {
    /// Starts the program (after the backoff, if any).
    fn start(&mut self) -> Result<(), String> {
        if let Some(t) = self.not_before.take() {
            std::thread::sleep(t.saturating_duration_since(Instant::now()));
        }
        let Some((program, args)) = self.program.argv.split_first() else {
            return Err("its configured argv is empty".into());
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.envs(&self.program.env);
        if let Some(dir) = &self.program.working_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot be started ({program}: {e})"))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            reap(&mut child, Duration::ZERO);
            return Err("started without pipes".into());
        };
        let (tx, answers) = sync_channel(ANSWER_QUEUE);
        // The threads end when the program's pipes close (it exits or is killed); they are
        // not joined, so that a grandchild holding a pipe cannot hang the engine.
        let threads = std::thread::Builder::new()
            .name(format!("external-{}-out", self.program.name))
            .spawn(move || read_answers(stdout, &tx))
            .and_then(|_| {
                let (id, name) = (self.id.clone(), self.program.name.clone());
                std::thread::Builder::new()
                    .name(format!("external-{}-err", self.program.name))
                    .spawn(move || forward_stderr(stderr, &id, &name))
            });
        if let Err(e) = threads {
            reap(&mut child, Duration::ZERO);
            return Err(format!("cannot start a reader thread: {e}"));
        }
        tracing::info!(processor = %self.id, program = %self.program.name, pid = child.id(), "external program started");
        self.running = Some(Running {
            child,
            stdin: Some(stdin),
            answers,
        });
        Ok(())
    }

    /// Sends one request and waits for its answer line.
    fn exchange(&mut self, request: &Json) -> Result<String, Trouble> {
        if self.running.is_none() {
            self.start().map_err(Trouble::Crashed)?;
        }
        let Some(running) = self.running.as_mut() else {
            return Err(Trouble::Crashed("is not running".into()));
        };
        let mut line = request.to_string();
        line.push('\n');
        let written = match running.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = written {
            return Err(Trouble::Crashed(format!("stopped reading its input ({e})")));
        }
        match running.answers.recv_timeout(self.timeout) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(why)) => Err(Trouble::Malformed(why)),
            Err(RecvTimeoutError::Timeout) => Err(Trouble::TimedOut),
            Err(RecvTimeoutError::Disconnected) => {
                Err(Trouble::Crashed("closed its output".into()))
            }
        }
    }

    /// Stops the program after `trouble`, counts the restart and sets the backoff; the
    /// reason to give (dead letters, logs).
    ///
    /// # Errors
    ///
    /// [`ProcessorError::Failed`] beyond `maxRestarts` restarts within `restartWindow`.
    fn recover(&mut self, trouble: Trouble) -> Result<String, ProcessorError> {
        let name = &self.program.name;
        let mut reason = match &trouble {
            Trouble::Crashed(what) => format!("external program `{name}` {what}"),
            Trouble::TimedOut => format!(
                "external program `{name}` did not answer within {:?}",
                self.timeout
            ),
            Trouble::Malformed(what) => {
                format!("external program `{name}` answered against the protocol: {what}")
            }
        };
        if let Some(mut running) = self.running.take() {
            drop(running.stdin.take());
            let grace = match trouble {
                Trouble::Crashed(_) => EXIT_GRACE,
                Trouble::TimedOut | Trouble::Malformed(_) => Duration::ZERO,
            };
            reason.push_str(&format!(" ({})", reap(&mut running.child, grace)));
        }
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.restart_window)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        let recent = self.restarts.len();
        if recent > self.max_restarts {
            tracing::error!(processor = %self.id, program = %name, %reason, "external program keeps failing: giving up");
            return Err(ProcessorError::external(format!(
                "{reason}; it failed {recent} times within {:?} (maxRestarts {}): giving up",
                self.restart_window, self.max_restarts
            )));
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (recent - 1).min(16))
            .min(MAX_BACKOFF);
        self.not_before = Some(now + backoff);
        tracing::warn!(processor = %self.id, program = %name, %reason, restart = recent, ?backoff, "restarting external program");
        reason.push_str("; it is restarted");
        Ok(reason)
    }

    /// Sends a request that rejects nothing (watermark, flush) and emits the answer.
    fn control(&mut self, request: &Json, out: &mut Output<'_>) -> Result<(), ProcessorError> {
        let decode = self.decode_context(out.sink());
        let answer = blocking(|| self.exchange(request))
            .and_then(|line| read_answer(&line, 0, &decode).map_err(Trouble::Malformed));
        match answer {
            Ok(answer) => {
                for o in answer.emit {
                    out.emit(o);
                }
                Ok(())
            }
            Err(trouble) => {
                let reason = blocking(|| self.recover(trouble))?;
                tracing::warn!(processor = %self.id, %reason, request = %request, "an external program's answer was lost");
                Ok(())
            }
        }
    }

    fn decode_context(&self, sink: Sym) -> DecodeContext {
        DecodeContext {
            dsm: sink,
            default_name: self.output_name,
            default_kind: None,
        }
    }
}

impl Processor for External {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        if input.is_empty() {
            return Ok(());
        }
        let request =
            json!({"observations": input.iter().map(observation_json).collect::<Vec<_>>()});
        let decode = self.decode_context(out.sink());
        let answer = blocking(|| self.exchange(&request))
            .and_then(|line| read_answer(&line, input.len(), &decode).map_err(Trouble::Malformed));
        match answer {
            Ok(answer) => {
                let ingested = input.iter().map(|o| o.ingested).max().unwrap_or_default();
                for mut o in answer.emit {
                    o.ingested = ingested;
                    out.emit(o);
                }
                for (index, reason) in answer.reject {
                    out.reject(
                        &input[index],
                        format!("external program `{}`: {reason}", self.program.name),
                    );
                }
                Ok(())
            }
            Err(trouble) => {
                let recovered = blocking(|| self.recover(trouble));
                let reason = match &recovered {
                    Ok(reason)
                    | Err(ProcessorError::Failed {
                        message: reason, ..
                    }) => reason.clone(),
                    Err(e) => e.to_string(),
                };
                for o in input {
                    out.reject(o, reason.clone());
                }
                recovered.map(drop)
            }
        }
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        // The end of a finite input (+infinity) is no instant: the flush says it.
        if watermark == Timestamp::MAX || watermark == Timestamp::MIN {
            return Ok(());
        }
        self.control(&json!({"watermark": watermark.to_string()}), out)
    }

    fn flush(&mut self, out: &mut Output<'_>) -> Result<(), ProcessorError> {
        if self.running.is_none() {
            // Never started (no input) or lost: nothing is held by a program.
            return Ok(());
        }
        self.control(&json!({"flush": true}), out)?;
        if let Some(mut running) = self.running.take() {
            // End of input: the program may save its state and exit by itself.
            drop(running.stdin.take());
            let status = blocking(|| reap(&mut running.child, EXIT_GRACE));
            tracing::info!(processor = %self.id, program = %self.program.name, %status, "external program stopped");
        }
        Ok(())
    }
}

impl Drop for External {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            drop(running.stdin.take());
            reap(&mut running.child, Duration::ZERO);
        }
    }
}

/// An observation as the program sees it: the engine's LiveDataSet observation, flat, with
/// its source.
fn observation_json(o: &Observation) -> Json {
    let mut set = encode_live_data_set(o);
    let inner = set
        .get_mut("observation")
        .and_then(Json::as_array_mut)
        .and_then(Vec::pop);
    match inner {
        Some(Json::Object(mut flat)) => {
            flat.remove("id");
            flat.insert(
                "dataSourceManifestReferenceID".into(),
                Json::String(o.source.text().to_string()),
            );
            Json::Object(flat)
        }
        _ => set,
    }
}

/// A well-formed answer.
#[derive(Debug, Default)]
struct Answer {
    emit: Vec<Observation>,
    /// (index in the batch, reason)
    reject: Vec<(usize, String)>,
}

/// Reads an answer line to a request of `batch` observations.
fn read_answer(line: &str, batch: usize, decode: &DecodeContext) -> Result<Answer, String> {
    let quoted = quote(line);
    let value: Json = serde_json::from_str(line)
        .map_err(|e| format!("the answer is not JSON ({e}): {quoted}"))?;
    let Json::Object(mut fields) = value else {
        return Err(format!("the answer is not a JSON object: {quoted}"));
    };
    let mut answer = Answer::default();
    match fields.remove("emit") {
        None | Some(Json::Null) => {}
        Some(list @ Json::Array(_)) => {
            decode_json(&list.to_string(), decode, &mut answer.emit)
                .map_err(|e| format!("`emit` holds an unreadable observation ({e}): {quoted}"))?;
        }
        Some(_) => return Err(format!("`emit` is not a list: {quoted}")),
    }
    match fields.remove("reject") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) => {
            for item in &items {
                answer
                    .reject
                    .push(read_reject(item, batch).map_err(|e| format!("{e}: {quoted}"))?);
            }
        }
        Some(_) => return Err(format!("`reject` is not a list: {quoted}")),
    }
    if let Some(key) = fields.keys().next() {
        return Err(format!(
            "unknown key {key:?} (an answer has `emit` and `reject`): {quoted}"
        ));
    }
    Ok(answer)
}

fn read_reject(item: &Json, batch: usize) -> Result<(usize, String), String> {
    let fields: &Map<String, Json> = item
        .as_object()
        .ok_or("an element of `reject` is not an object {\"index\", \"reason\"}")?;
    let index = fields
        .get("index")
        .and_then(Json::as_u64)
        .and_then(|i| usize::try_from(i).ok())
        .ok_or("an element of `reject` has no whole-number `index`")?;
    if index >= batch {
        return Err(if batch == 0 {
            "only answers to a batch may reject observations".to_owned()
        } else {
            format!("`reject` index {index} is outside the batch of {batch}")
        });
    }
    let reason = match fields.get("reason") {
        None | Some(Json::Null) => "rejected, no reason given".to_owned(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Ok((index, reason))
}

/// The beginning of a line, for a reason.
fn quote(line: &str) -> String {
    let line = line.trim_end();
    match line.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{}… ({} bytes)", &line[..cut], line.len()),
        None => line.to_owned(),
    }
}

/// Reads the program's output, one answer per non-empty line, until it ends.
fn read_answers(stdout: ChildStdout, answers: &SyncSender<Result<String, String>>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line);
        let answer = match read {
            Ok(0) => return,
            Ok(_) if line.len() as u64 > MAX_LINE => Err(format!(
                "an answer line is longer than {MAX_LINE} bytes: {}",
                quote(&String::from_utf8_lossy(&line))
            )),
            Ok(_) => match String::from_utf8(line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => Ok(text),
                Err(e) => Err(format!(
                    "an answer line is not UTF-8: {}",
                    quote(&String::from_utf8_lossy(e.as_bytes()))
                )),
            },
            Err(e) => Err(format!("its output cannot be read: {e}")),
        };
        let last = answer.is_err();
        // The processor is gone (it dropped the receiver): stop reading.
        if answers.send(answer).is_err() || last {
            return;
        }
    }
}

/// Sends the program's standard error to the log, line by line.
fn forward_stderr(stderr: ChildStderr, processor: &str, program: &str) {
    for line in BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { return };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::info!(processor = %processor, program = %program, stderr = %quote(text), "external program says");
        }
    }
}

/// Waits up to `grace` for the child to exit by itself, then kills it; waits for it in any
/// case (no zombie). Says how it ended.
fn reap(child: &mut Child, grace: Duration) -> String {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = child.kill();
    match child.wait() {
        Ok(status) => format!("killed: {status}"),
        Err(e) => format!("cannot be waited for: {e}"),
    }
}

/// Runs `f`, which may block for a while: on the multi-threaded runtime the worker thread is
/// handed over first, so other tasks keep running.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
