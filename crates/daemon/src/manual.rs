//! berthd(8), printed by the hidden `berthd --man` for packaging (the .deb
//! installs it) and for `berthd --man | man -l -`. The options come from
//! the CLI definition itself; the CONFIGURATION section is the commented
//! default config the package installs (deploy/config/config.toml, which
//! the tests check against README and against berthd's parser), so the
//! manual cannot drift from what berthd reads.

use std::io::Write;

use clap::CommandFactory;

const DEFAULT_CONFIG: &str = include_str!("../../../deploy/config/config.toml");

pub fn print<C: CommandFactory>() -> std::io::Result<()> {
    let man = clap_mangen::Man::new(C::command()).section("8");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    writeln!(out, ".SH CONFIGURATION")?;
    writeln!(out, "/etc/berth/config.toml is optional; every key has a default, and a key berthd does not know is an error. The keys, with their defaults:")?;
    writeln!(out, ".PP\n.nf")?;
    for line in DEFAULT_CONFIG.lines() {
        writeln!(out, "{}", roff_literal(line))?;
    }
    writeln!(out, ".fi")?;
    writeln!(out, ".SH FILES\n.TP\n/run/berth/berth.sock\nthe CRI endpoint (kubelet: --container-runtime-endpoint unix:///run/berth/berth.sock)")?;
    writeln!(out, ".TP\n/var/lib/berth\nimages, snapshots, pod and container records\n.TP\n/run/berth\nshim sockets and bundles (volatile)")?;
    writeln!(out, ".SH SEE ALSO\nberthctl(1), systemd.service(5) (berthd.service is Type=notify)")?;
    man.render_version_section(&mut out)?;
    std::io::stdout().write_all(&out)
}

/// A line of text that roff prints as it is: backslashes escaped, and a
/// leading `.` or `'` (a roff request) neutralised.
fn roff_literal(line: &str) -> String {
    let escaped = line.replace('\\', "\\e");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
