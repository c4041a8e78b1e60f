//! Background loaders (demo cluster, runbook index, tokenizer) must not compete with answering
//! requests on a small machine.

/// Lowers the calling thread's scheduling priority (Linux schedules threads individually).
pub fn lower_thread_priority() {
    set_nice(10);
}

/// Lowers it a little: the threads that run tool calls, so that the protocol's threads
/// (reading requests, answering pings) win the CPU when both want it.
pub fn lower_thread_priority_slightly() {
    set_nice(4);
}

fn set_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's id changes only its nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
