//! berthd runs with one glibc malloc arena.
//!
//! glibc gives each thread that allocates while others do an arena of its
//! own (up to eight per core) and keeps in each what was freed there.
//! berthd's blocking threads come and go with every burst of container
//! starts, and an idle berthd held five arenas, 1.2 MiB of its 12.8 MiB
//! (issue 15 budgets 12 MiB idle); with one, 11.5-11.9 MiB, and pod starts
//! as fast (two tokio workers and short blocking jobs seldom allocate at
//! the same instant). glibc reads the setting from the environment before
//! main, so berthd execs itself once with `MALLOC_ARENA_MAX=1` unless the
//! variable is set already (an operator's own value is kept).

use std::os::unix::process::CommandExt;

const VARIABLE: &str = "MALLOC_ARENA_MAX";

/// Returns only when nothing is to be done or the exec failed (berthd then
/// runs with glibc's default arenas, and says so).
pub fn exec_with_one_arena_unless_set() {
    if std::env::var_os(VARIABLE).is_some() {
        return;
    }
    // By its path, not /proc/self/exe, which would make every berthd
    // "exe" in ps and top (the kernel names a process after the file it
    // execs). A path gone since start fails the exec, and berthd runs on.
    let error = match std::env::current_exe() {
        Ok(path) => {
            let mut args = std::env::args_os();
            let arg0 = args.next().unwrap_or_else(|| path.clone().into_os_string());
            std::process::Command::new(&path).arg0(arg0).args(args).env(VARIABLE, "1").exec()
        }
        Err(e) => e,
    };
    eprintln!("berthd: exec itself with {VARIABLE}=1: {error}; running with glibc's default malloc arenas");
}
