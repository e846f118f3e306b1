//! A Postgres cluster a test owns, so it can stop and start it under a running server:
//! made with the installed `initdb` in a temporary directory, on a free loopback port.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// A running (or stopped) cluster, removed when dropped.
pub struct ThrowawayPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Its `postgres` database, as `DATABASE_URL` names it.
    pub url: String,
}

impl ThrowawayPostgres {
    /// Creates and starts a cluster (trust authentication, no fsync).
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("the fault tests need Postgres' server binaries (apt-get install postgresql)")
            .map(|entry| entry.unwrap().path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("no initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            port,
        };
        if is_root() {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            std::os::unix::fs::chown(cluster.dir.path(), Some(postgres_uid()), None).unwrap();
        }
        succeeded(
            cluster
                .as_owner("initdb")
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(cluster.data())
                .output()
                .unwrap(),
            "initdb",
        );
        cluster.resume();
        cluster
    }

    /// Stops the cluster as an operator's restart does (`pg_ctl stop -m fast`): sessions are
    /// ended and the port closes.
    pub fn stop(&self) {
        succeeded(
            self.as_owner("pg_ctl")
                .args(["stop", "-m", "fast", "-w", "-D"])
                .arg(self.data())
                .output()
                .unwrap(),
            "pg_ctl stop",
        );
    }

    /// Starts the cluster again on the same port and data.
    pub fn resume(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        succeeded(
            self.as_owner("pg_ctl")
                .args(["start", "-w", "-o", &options, "-l"])
                .arg(self.dir.path().join("log"))
                .arg("-D")
                .arg(self.data())
                .output()
                .unwrap(),
            "pg_ctl start",
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_owner(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
    }
}

fn succeeded(output: Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|proc| proc.uid() == 0)
}

fn postgres_uid() -> u32 {
    let output = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}
