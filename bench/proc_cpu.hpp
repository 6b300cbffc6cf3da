// CPU time of another process on this machine, from /proc (Redis's or PostgreSQL's, next to the
// bench's own).
#pragma once

namespace sessiond::bench {

/// utime + stime of /proc/PID/stat in seconds, with the children it waited for when asked; 0
/// when the process is gone.
double proc_cpu_s(long pid, bool with_children);

} // namespace sessiond::bench
