//! Where a run's CPU went: utime + stime of every process on the machine,
//! grouped by command name (`postgres`, `redis-server`, `atoitalk`, the
//! bench itself, `pgbench`), between two snapshots, plus the machine's busy
//! time from `/proc/stat`. A ratio against a baseline says little without
//! knowing which process on the shared cores spent the budget.

use std::collections::HashMap;

use super::storm::cpu_secs;

/// (pid → (command, CPU seconds)) and the machine's busy seconds.
pub struct Snapshot {
    procs: HashMap<u32, (String, f64)>,
    busy: f64,
}

impl Snapshot {
    pub fn take() -> Self {
        let mut procs = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                procs.insert(pid, (comm, cpu_secs(pid)));
            }
        }
        Self {
            procs,
            busy: machine_busy(),
        }
    }

    /// CPU seconds per command name since `before` (processes that started
    /// in between count from zero; ones that ended are lost), and the
    /// machine's busy seconds.
    pub fn since(&self, before: &Snapshot) -> (Vec<(String, f64)>, f64) {
        let mut by: HashMap<String, f64> = HashMap::new();
        for (pid, (comm, secs)) in &self.procs {
            let base = before.procs.get(pid).map(|p| p.1).unwrap_or(0.0);
            let d = secs - base;
            if d > 0.0 {
                *by.entry(group(comm)).or_default() += d;
            }
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        (v, self.busy - before.busy)
    }
}

/// Postgres backends rename themselves; tokio workers are threads, so the
/// process name is the binary's.
fn group(comm: &str) -> String {
    if comm.starts_with("postgres") || comm.starts_with("postmaster") {
        "postgres".into()
    } else {
        comm.to_string()
    }
}

/// user + nice + system + irq + softirq + steal seconds of all cores.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) / 100.0
}

/// "postgres 412, atoitalk 380, … µs per op; machine 1,650" for `ops`
/// operations, the processes that used at least 1 % of the busy time.
pub fn per_op(after: &Snapshot, before: &Snapshot, ops: f64) -> String {
    let (by, busy) = after.since(before);
    if ops <= 0.0 {
        return String::new();
    }
    let mut parts: Vec<String> = by
        .iter()
        .filter(|(_, s)| *s >= busy * 0.01)
        .map(|(c, s)| format!("{c} {:.0}", s * 1e6 / ops))
        .collect();
    parts.push(format!("machine {:.0}", busy * 1e6 / ops));
    format!("{} µs CPU per op", parts.join(", "))
}
