//! A minimal `log` backend: one line per record on stderr, which `start`
//! points at the bundle's `shim.log`. A full tracing stack would cost the
//! shim more memory than everything else it does.

use std::io::Write;

use crate::timestamp::rfc3339_nano;

struct StderrLogger {
    id: String,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!(
                "{} {} berth-shim container_id={} pid={} {}\n",
                rfc3339_nano(std::time::SystemTime::now()),
                record.level(),
                self.id,
                std::process::id(),
                record.args()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

pub fn init(id: &str) {
    let level = match std::env::var("BERTH_SHIM_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("warn") => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    if log::set_boxed_logger(Box::new(StderrLogger { id: id.to_string() })).is_ok() {
        log::set_max_level(level);
    }
}
