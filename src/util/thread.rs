//! Background loaders (demo cluster, runbook index, tokenizer) must not compete with answering
//! requests on a small machine.

/// Lowers the calling thread's scheduling priority (Linux schedules threads individually).
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's id changes only its nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
