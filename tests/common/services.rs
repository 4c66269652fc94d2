//! Real servers for connector tests: the shared ones `scripts/test` starts (Mosquitto,
//! PostgreSQL, Tansu, nx-27017), and private ones a test starts on a free port to restart
//! at will. A shared service that is not there fails the test under CI (`CI=true`) and
//! skips it loudly elsewhere.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Whether the tests run under CI, where every service must be there.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn reachable(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether `what` answers on 127.0.0.1:`port`. Absent: fails under CI, a loud skip otherwise.
pub fn available(what: &str, port: u16) -> bool {
    if reachable(port) {
        return true;
    }
    absent(&format!(
        "{what} is not reachable on 127.0.0.1:{port}; scripts/test starts it"
    ))
}

/// Whether `program` can be run. Absent: fails under CI, a loud skip otherwise.
pub fn installed(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    found
        || absent(&format!(
            "{program} is not installed; scripts/test installs it"
        ))
}

fn absent(message: &str) -> bool {
    assert!(!ci(), "{message}");
    eprintln!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
    false
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reachable(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up on port {port}");
}

/// A server this test runs: stopped gracefully (SIGTERM) and started again at will,
/// killed when dropped.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    pub dir: tempfile::TempDir,
    program: PathBuf,
    args: Vec<String>,
    user: Option<&'static str>,
    /// Where the server writes its pid, when `child` is not the server itself.
    pid_file: Option<PathBuf>,
    /// The signal that asks it to stop.
    stop_signal: &'static str,
    child: Option<Child>,
}

impl Server {
    fn new(name: &'static str, program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            name,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            program: program.into(),
            args,
            user: None,
            pid_file: None,
            stop_signal: "-TERM",
            child: None,
        }
    }

    /// Starts it and waits until it listens.
    pub fn start(&mut self) {
        let mut command = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = command
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
        wait_for_port(self.port, self.name);
    }

    /// Stops it the way a service manager does (SIGTERM; PostgreSQL's fast shutdown,
    /// SIGINT, which does not wait for clients to leave) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Run through `runuser`, the child is not the server: its pid file says which is.
            let pid = self
                .pid_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|t| t.lines().next().map(str::to_owned))
                .unwrap_or_else(|| child.id().to_string());
            let _ = Command::new("kill").args([self.stop_signal, &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while reachable(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it, waits `down`, starts it again.
    pub fn restart(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.start();
    }

    /// Its log, for messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(pid) = self
            .pid_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| t.lines().next().map(str::to_owned))
        {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Mosquitto broker of its own, persisting sessions and queued messages, optionally with
/// a password file (user `dda`, password `secret`). `None` when Mosquitto is missing
/// outside CI.
pub fn mosquitto(with_password: bool) -> Option<Server> {
    if !installed("mosquitto") {
        return None;
    }
    let mut s = Server::new("mosquitto", "mosquitto", Vec::new());
    s.port = free_port();
    let dir = s.dir.path().to_owned();
    let mut conf = format!(
        "listener {} 127.0.0.1\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 100000\n",
        s.port,
        dir.display()
    );
    if is_root() {
        // Otherwise it becomes user `mosquitto`, who cannot write the test's folder.
        conf.push_str("user root\n");
    }
    if with_password {
        let passwd = dir.join("passwd");
        let ok = Command::new("mosquitto_passwd")
            .args(["-b", "-c", passwd.to_str().unwrap(), "dda", "secret"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mosquitto_passwd failed");
        conf.push_str(&format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        ));
    } else {
        conf.push_str("allow_anonymous true\n");
    }
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    s.args = vec![
        "-c".into(),
        dir.join("mosquitto.conf").display().to_string(),
    ];
    s.start();
    Some(s)
}

/// A Tansu (Kafka) broker of its own, storing in SQLite so that a restart keeps topics,
/// messages and committed offsets.
pub fn tansu() -> Option<Server> {
    if !installed("tansu") {
        return None;
    }
    let mut s = Server::new("tansu", "tansu", Vec::new());
    s.port = free_port();
    let url = format!("tcp://127.0.0.1:{}", s.port);
    s.args = vec![
        "broker".into(),
        "--listener-url".into(),
        url.clone(),
        "--advertised-listener-url".into(),
        url,
        "--storage-engine".into(),
        // A path relative to the folder it runs in (Tansu reads absolute ones wrongly).
        "sqlite://tansu.db".into(),
    ];
    s.start();
    Some(s)
}

/// An nx-27017 (MongoDB wire protocol) server of its own, storing in a file.
pub fn nx_27017() -> Option<Server> {
    if !installed("nx-27017") {
        return None;
    }
    let mut s = Server::new("nx-27017", "nx-27017", Vec::new());
    s.port = free_port();
    let dir = s.dir.path().to_owned();
    s.args = vec![
        "--db".into(),
        dir.join("mongo.db").display().to_string(),
        "-p".into(),
        s.port.to_string(),
        "--pid-file".into(),
        dir.join("nx.pid").display().to_string(),
        "--log-file".into(),
        dir.join("nx.log").display().to_string(),
    ];
    s.start();
    Some(s)
}

/// The PostgreSQL server programs (`initdb`, `postgres`) of the newest installed version.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// A PostgreSQL cluster of its own (trust authentication, user `postgres`, database
/// `postgres`), run as the `postgres` system user when the tests run as root.
pub fn postgres() -> Option<Server> {
    let Some(bin) = postgres_bin() else {
        absent("PostgreSQL server programs are not in /usr/lib/postgresql/*/bin");
        return None;
    };
    let root = is_root();
    let mut s = Server::new("postgres", bin.join("postgres"), Vec::new());
    s.port = free_port();
    let data = s.dir.path().join("data");
    let user = root.then_some("postgres");
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres", s.dir.path().to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown of the cluster folder failed");
    }
    let mut initdb = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(bin.join("initdb"));
            c
        }
        None => Command::new(bin.join("initdb")),
    };
    let out = initdb
        .args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.user = user;
    s.pid_file = Some(data.join("postmaster.pid"));
    s.stop_signal = "-INT";
    s.args = vec![
        "-D".into(),
        data.display().to_string(),
        "-p".into(),
        s.port.to_string(),
        "-k".into(),
        s.dir.path().display().to_string(),
        "-c".into(),
        "listen_addresses=127.0.0.1".into(),
        "-c".into(),
        "fsync=off".into(),
    ];
    s.start();
    Some(s)
}

/// Whether the tests run as root (servers that drop privileges need telling).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A file in a private folder, for configuration.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
