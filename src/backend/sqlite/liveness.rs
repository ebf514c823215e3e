//! Which processes using a broker file are still alive.
//!
//! Each process registers its pid, its start time (from `/proc/PID/stat`, so a recycled pid is
//! not mistaken for it) and the boot id (so that nothing survives a reboot). A process is dead
//! when no process with that pid and start time exists on this boot. Nothing has to be written
//! periodically (no heartbeats): the kernel's process table is the lease. The file must
//! therefore be used from one machine (SQLite's WAL requires that anyway) and one pid
//! namespace; elsewhere than Linux, processes are taken as alive until they close.

/// What identifies a process across pid reuse and reboots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) pid: i64,
    pub(super) started: i64,
    pub(super) boot: String,
}

impl Identity {
    /// This process.
    pub(super) fn current() -> Identity {
        let pid = i64::from(std::process::id());
        Identity {
            pid,
            started: start_time(pid).unwrap_or(0),
            boot: boot_id(),
        }
    }

    /// Whether the process `other` still runs (as seen from this one).
    pub(super) fn sees_alive(&self, other: &Identity) -> bool {
        if !cfg!(target_os = "linux") {
            return true;
        }
        if other.boot != self.boot {
            return false;
        }
        start_time(other.pid) == Some(other.started)
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot; `None`
/// for no such process, or one that has exited and waits to be reaped (a zombie holds nothing
/// and acknowledges nothing, whatever its parent does).
fn start_time(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let me = Identity::current();
        assert!(me.started > 0);
        assert!(me.sees_alive(&me));
        let recycled = Identity {
            started: me.started + 1,
            ..me.clone()
        };
        assert!(!me.sees_alive(&recycled));
        let rebooted = Identity {
            boot: "another boot".into(),
            ..me.clone()
        };
        assert!(!me.sees_alive(&rebooted));
    }

    #[test]
    fn a_killed_child_not_yet_reaped_is_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        let started = start_time(pid).expect("a running child has a start time");
        let me = Identity::current();
        let other = Identity {
            pid,
            started,
            boot: me.boot.clone(),
        };
        assert!(me.sees_alive(&other));
        child.kill().unwrap();
        // Not reaped yet: a zombie until wait().
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while me.sees_alive(&other) {
            assert!(
                std::time::Instant::now() < deadline,
                "a zombie still looks alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
    }

    #[test]
    fn an_exited_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        let started = start_time(pid);
        child.wait().unwrap();
        let me = Identity::current();
        let gone = Identity {
            pid,
            started: started.unwrap_or(1),
            boot: me.boot.clone(),
        };
        assert!(!me.sees_alive(&gone));
    }
}
