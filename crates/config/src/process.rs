//! The processes the stack starts and later stops (the daemon, the devnet's anvil), named by pid
//! and start time: a pid the system has since given to another program is not ours, and is
//! never signalled. Signals go through `rustix`, not a spawned `kill`.

use serde::{Deserialize, Serialize};

/// A process we started: its pid and, where the system tells (Linux), its start time in clock
/// ticks since boot (`/proc/<pid>/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owned {
    /// Process id.
    pub pid: u32,
    /// Start time, when known; a state file from before it was recorded has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

/// The start time of `pid` (Linux), `None` when it does not run or the system does not say.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process with this pid exists (signal 0).
pub fn exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0))
            .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

impl Owned {
    /// The process `pid`, with its start time as the system tells now (call right after
    /// starting it).
    pub fn now(pid: u32) -> Self {
        Self {
            pid,
            start_ticks: start_ticks(pid),
        }
    }

    /// Whether it still runs: the pid exists and, when its start time was recorded, started
    /// then (a reused pid belongs to someone else).
    pub fn is_running(&self) -> bool {
        exists(self.pid)
            && match (self.start_ticks, start_ticks(self.pid)) {
                (Some(recorded), Some(current)) => recorded == current,
                _ => true,
            }
    }

    /// Asks it to stop (SIGTERM), only if it is still ours.
    pub fn terminate(&self) -> bool {
        self.signal(false)
    }

    /// Stops it (SIGKILL), only if it is still ours.
    pub fn kill(&self) -> bool {
        self.signal(true)
    }

    fn signal(&self, kill: bool) -> bool {
        if !self.is_running() {
            return false;
        }
        #[cfg(unix)]
        {
            use rustix::process::{Pid, Signal, kill_process};
            let signal = if kill { Signal::KILL } else { Signal::TERM };
            Pid::from_raw(i32::try_from(self.pid).unwrap_or(0))
                .is_some_and(|pid| kill_process(pid, signal).is_ok())
        }
        #[cfg(not(unix))]
        {
            let _ = kill;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_ours_until_it_stops_and_a_changed_start_time_is_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let owned = Owned::now(child.id());
        assert!(owned.is_running());
        if cfg!(target_os = "linux") {
            assert!(owned.start_ticks.is_some());
            let stranger = Owned {
                start_ticks: owned.start_ticks.map(|t| t + 1),
                ..owned
            };
            assert!(!stranger.is_running(), "a reused pid is not ours");
            assert!(!stranger.terminate(), "and is never signalled");
        }
        assert!(owned.terminate());
        let _ = child.wait();
        assert!(!owned.is_running());
        assert!(!owned.kill());
    }

    #[test]
    fn this_process_has_a_start_time() {
        if cfg!(target_os = "linux") {
            assert!(start_ticks(std::process::id()).is_some());
        }
        assert!(exists(std::process::id()));
        assert!(!exists(u32::MAX));
    }
}
