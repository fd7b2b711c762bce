//! Child processes of tests: killed and reaped when the guard goes, on every
//! exit path of the test (panics included), so nothing outlives a run.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running child whose output, when piped, is collected in the background
/// (so a chatty child never blocks on a full pipe).
pub struct ChildGuard {
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// What a finished child left.
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr, one after the other.
    pub output: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr piped.
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child process");
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        ChildGuard {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) from this process: no `kill`
    /// binary needed.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.id()).expect("pid");
        // SAFETY: kill(2) only sends a signal; the pid is our unreaped child,
        // so it cannot name another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits up to `within` for the child to exit; panics (and the guard
    /// then kills it) if it does not.
    pub async fn finish(mut self, within: Duration) -> Finished {
        let deadline = Instant::now() + within;
        let status = loop {
            let child = self.child.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "child {} still runs after {within:?}",
                child.id()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.child = None;
        let mut output = String::new();
        for h in [self.stdout.take(), self.stderr.take()]
            .into_iter()
            .flatten()
        {
            output.push_str(&String::from_utf8_lossy(&h.join().unwrap_or_default()));
        }
        Finished { status, output }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}
