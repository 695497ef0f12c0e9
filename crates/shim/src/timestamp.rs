//! RFC 3339 timestamps with nanoseconds, in UTC, as CRI log lines need.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-22T15:49:19.123456789Z`. Always nine fraction digits: the
/// kubelet's parser (Go's RFC3339Nano) accepts a fixed width.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z", rem / 3600, (rem % 3600) / 60, rem % 60, d.subsec_nanos())
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 86_399, 5); // 2000-02-29T23:59:59
        assert_eq!(rfc3339_nano(t), "2000-02-29T23:59:59.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_362_559); // 2026-11-22T15:49:19Z
        assert_eq!(rfc3339_nano(t), "2026-11-22T15:49:19.000000000Z");
    }
}
