//! CPU time and memory of a process, from Linux's /proc.

use std::path::PathBuf;

/// Where to read: a process id, or this process.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Pid(u32),
    Myself,
}

impl Target {
    fn dir(self) -> PathBuf {
        match self {
            Target::Pid(pid) => PathBuf::from(format!("/proc/{pid}")),
            Target::Myself => PathBuf::from("/proc/self"),
        }
    }

    /// User + system CPU seconds used so far (all threads).
    pub fn cpu_seconds(self) -> Option<f64> {
        let stat = std::fs::read_to_string(self.dir().join("stat")).ok()?;
        parse_stat_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_second())
    }

    /// Resident set size in bytes (`VmRSS`).
    pub fn rss_bytes(self) -> Option<u64> {
        let status = std::fs::read_to_string(self.dir().join("status")).ok()?;
        parse_status_kib(&status, "VmRSS:").map(|kib| kib * 1024)
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat. The command name
/// (field 2) is in parentheses and may hold spaces, so count from the last
/// `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (amphi media) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    1234 567 0 0 20 0 6 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        let status = "Name:\tamphi\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1234));
        assert!(Target::Myself.cpu_seconds().is_some());
        assert!(Target::Myself.rss_bytes().unwrap() > 0);
    }
}

/// Datagrams the kernel dropped on each local UDP port (receive buffer
/// full), from /proc/net/udp and udp6: the `drops` column, by port.
pub fn udp_drops_by_port() -> std::collections::HashMap<u16, u64> {
    let mut out = std::collections::HashMap::new();
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (port, drops) in text.lines().skip(1).filter_map(parse_udp_line) {
            *out.entry(port).or_insert(0) += drops;
        }
    }
    out
}

/// `sl local_address rem_address st … drops`: the local port (hex after
/// the colon) and the last column.
fn parse_udp_line(line: &str) -> Option<(u16, u64)> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
    let drops = fields.last()?.parse().ok()?;
    Some((port, drops))
}

#[cfg(test)]
mod udp_tests {
    #[test]
    fn parses_proc_net_udp() {
        let line = "  12: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 123456 2 0000000000000000 17";
        assert_eq!(super::parse_udp_line(line), Some((0x1f91, 17)));
        assert_eq!(super::parse_udp_line("garbage"), None);
    }
}
