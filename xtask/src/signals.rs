//! Signals: one handler for SIGINT, SIGTERM and SIGHUP.
//!
//! Children run in their own process group, so a terminal's Ctrl-C reaches only xtask. The
//! handler forwards the first signal to the running child and lets it finish: terraform then
//! saves its state and releases its lock, docker stops cleanly. Nothing exits from inside the
//! handler; the runner sees [`received`] and stops at the next step boundary, so every cleanup
//! guard runs. A second signal is not forwarded (a second SIGINT makes terraform abandon the
//! apply); it only says what is going on.
//!
//! SIGHUP is forwarded as SIGTERM: a closed terminal means "stop", and terraform stops
//! cleanly (state saved, lock released) on SIGINT and SIGTERM only; a SIGHUP kills it on the
//! spot, leaving the state lock held and its provider plugins orphaned.

use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};

/// The pid of the child being waited for, or 0.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The first signal received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The first signal received in this process, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The signal a child gets for `sig`: the same, except SIGHUP, which becomes SIGTERM (see the
/// module comment). Async-signal-safe.
pub fn forwarded(sig: i32) -> i32 {
    if sig == libc::SIGHUP {
        libc::SIGTERM
    } else {
        sig
    }
}

/// The exit code a shell reports for death by `sig`.
pub fn exit_code(sig: i32) -> u8 {
    128u8.saturating_add(sig as u8)
}

fn say(msg: &[u8]) {
    // SAFETY: write(2) is async-signal-safe; the buffer outlives the call.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

extern "C" fn on_signal(sig: libc::c_int) {
    let first = RECEIVED
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    let child = CHILD.load(Ordering::SeqCst);
    match (first, child > 0) {
        (true, true) => {
            // SAFETY: kill(2) is async-signal-safe; `child` is our own, still unreaped child.
            unsafe { libc::kill(child, forwarded(sig)) };
            say(b"\nxtask: signal forwarded to the running command; waiting for it to exit cleanly (its state is saved, locks released), then stopping\n");
        }
        (true, false) => {
            say(b"\nxtask: signal received; stopping after cleanup\n");
        }
        (false, true) => {
            say(b"\nxtask: already stopping: the running command got the first signal and is finishing; not forwarded again (a second interrupt would make terraform abandon its work). To abandon anyway, kill -9 its process group\n");
        }
        (false, false) => {
            say(b"\nxtask: already stopping: cleanup is running\n");
        }
    }
}

/// Installs the handler once per process.
pub fn install() {
    INSTALL.call_once(|| {
        for sig in SIGNALS {
            // SAFETY: a plain sigaction with an async-signal-safe handler. SA_RESTART keeps
            // blocking reads and waits going; the runner checks `received` itself.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
    });
}

/// Blocks INT, TERM and HUP for the life of the guard: a signal that arrives between spawning
/// a child and recording its pid is delivered (and forwarded) right after, never lost.
pub struct Blocked {
    old: libc::sigset_t,
}

impl Blocked {
    #[allow(clippy::new_without_default)] // Blocking signals is an action, not a default value.
    pub fn new() -> Blocked {
        // SAFETY: sigset operations on local, initialised sets.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in SIGNALS {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            Blocked { old }
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Records `pid` as the child to forward to, while signals are blocked; cleared on drop.
pub struct Forwarding;

impl Forwarding {
    pub fn to(pid: u32, _blocked: &Blocked) -> Forwarding {
        CHILD.store(pid as i32, Ordering::SeqCst);
        // A signal that came before the child existed is passed on now, so it stops too.
        if let Some(sig) = received() {
            // SAFETY: our own, unreaped child.
            unsafe { libc::kill(pid as i32, forwarded(sig)) };
        }
        Forwarding
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        CHILD.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hangup_reaches_children_as_a_termination() {
        // terraform dies on SIGHUP without releasing its state lock; SIGTERM stops it cleanly.
        assert_eq!(forwarded(libc::SIGHUP), libc::SIGTERM);
        assert_eq!(forwarded(libc::SIGINT), libc::SIGINT);
        assert_eq!(forwarded(libc::SIGTERM), libc::SIGTERM);
        assert_eq!(exit_code(libc::SIGHUP), 129);
    }
}
