//! How much of each process's command line a capture keeps (`--cmdline full|name|none`).
//! Command lines are where secrets get passed (`mysql -pSECRET`, `curl -H 'Authorization:
//! Bearer ...'`, tokens in URLs), of every user's processes, not only the capturing user's;
//! whatever is stored persists in the database, in recordings and in every export. So the
//! default keeps the program only (`name`): process-level analysis still knows what ran, and no
//! argument is stored. `full` keeps everything (forensics on a host whose users you trust),
//! `none` nothing.
//!
//! Applied to each snapshot as the source yields it, before it is stored or recorded. Uses
//! nothing but the capture types.

use serde::{Deserialize, Serialize};

use super::{Snapshot, Source};
use crate::error::Result;

/// What of a process's command line is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmdlinePolicy {
    /// The whole command line, arguments included.
    Full,
    /// The first word only (the program as started), no argument.
    #[default]
    Name,
    /// Nothing (NULL).
    None,
}

impl std::str::FromStr for CmdlinePolicy {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "full" => Ok(CmdlinePolicy::Full),
            "name" => Ok(CmdlinePolicy::Name),
            "none" => Ok(CmdlinePolicy::None),
            other => Err(format!("'{other}' is not one of full, name, none")),
        }
    }
}

impl CmdlinePolicy {
    /// Trims every process's command line in `snapshot` to what this policy keeps.
    pub fn apply(self, snapshot: &mut Snapshot) {
        for process in &mut snapshot.processes {
            process.cmdline = match self {
                CmdlinePolicy::Full => continue,
                CmdlinePolicy::None => None,
                CmdlinePolicy::Name => process
                    .cmdline
                    .as_deref()
                    .and_then(|c| c.split_whitespace().next())
                    .map(str::to_string),
            };
        }
    }
}

/// A source whose snapshots keep only what a [`CmdlinePolicy`] allows of command lines.
pub struct Trimmed {
    inner: Box<dyn Source>,
    policy: CmdlinePolicy,
}

impl Trimmed {
    pub fn new(inner: Box<dyn Source>, policy: CmdlinePolicy) -> Self {
        Trimmed { inner, policy }
    }
}

impl Source for Trimmed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn snapshot(&mut self, now: chrono::DateTime<chrono::Utc>) -> Result<Option<Snapshot>> {
        let mut snapshot = self.inner.snapshot(now)?;
        if let Some(s) = snapshot.as_mut() {
            self.policy.apply(s);
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cmdline(cmdline: Option<&str>) -> Snapshot {
        let mut s: Snapshot = serde_json::from_str(r#"{"ts":"2026-01-01T00:00:00Z","host":"h","sockets":[]}"#).unwrap();
        s.processes.push(super::super::ProcessRecord {
            pid: 1,
            ppid: None,
            name: "mysql".to_string(),
            exe: Some("/usr/bin/mysql".to_string()),
            cmdline: cmdline.map(str::to_string),
            user_name: None,
            uid: None,
            status: None,
            cpu_percent: None,
            memory_rss_bytes: None,
            memory_virtual_bytes: None,
            start_time: None,
            disk_read_bytes: None,
            disk_written_bytes: None,
        });
        s
    }

    #[test]
    fn arguments_are_dropped_unless_full_is_asked_for() {
        let secret = "/usr/bin/mysql -u root -phunter2 --host db";
        let kept = |policy: CmdlinePolicy, cmdline: Option<&str>| {
            let mut s = with_cmdline(cmdline);
            policy.apply(&mut s);
            s.processes[0].cmdline.clone()
        };
        assert_eq!(
            kept(CmdlinePolicy::default(), Some(secret)).as_deref(),
            Some("/usr/bin/mysql")
        );
        assert_eq!(kept(CmdlinePolicy::Full, Some(secret)).as_deref(), Some(secret));
        assert_eq!(kept(CmdlinePolicy::None, Some(secret)), None);
        assert_eq!(kept(CmdlinePolicy::Name, None), None);
        assert_eq!(kept(CmdlinePolicy::Name, Some("  ")), None);
        assert_eq!("none".parse::<CmdlinePolicy>(), Ok(CmdlinePolicy::None));
        assert!("all".parse::<CmdlinePolicy>().is_err());
    }
}
