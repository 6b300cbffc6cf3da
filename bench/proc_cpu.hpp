// Another process on this machine, from /proc: its CPU time (Redis's or PostgreSQL's, next to
// the bench's own) and its parent.
#pragma once

namespace sessiond::bench {

/// utime + stime of /proc/PID/stat in seconds, with the children it waited for when asked; 0
/// when the process is gone.
double proc_cpu_s(long pid, bool with_children);

/// The parent's pid from /proc/PID/stat; -1 when the process is gone.
long parent_pid(long pid);

} // namespace sessiond::bench
