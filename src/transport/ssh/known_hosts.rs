//! Host-key verification against OpenSSH `known_hosts` files, with OpenSSH's semantics: a key
//! marked `@revoked` for the host is refused whatever other lines say; otherwise any plain
//! line for the host with the same key accepts it; lines for the host with the same key type
//! and another key mean it changed (always refused); anything else is unknown (refused, or,
//! with `--accept-new-host-keys`, recorded). What was found is kept so the connect error can
//! say it precisely, with the line number counted as editors and `ssh` count it.
//!
//! The file is parsed here (markers, hashed names, `[host]:port`, host lists with `*`, `?` and
//! `!`, any run of blanks between fields); russh only parses the keys and appends new lines.
//! Not supported: `@cert-authority` lines (skipped: drover accepts plain host keys only),
//! `CheckHostIP`, the global `known_hosts` file and `RevokedHostKeys` lists.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::keys::ssh_encoding::base64::{Base64, Encoding as _};
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

/// Why a host key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unknown {
        fingerprint: String,
    },
    /// Lines for the host hold other keys of this type; `line` is the first of them.
    Changed {
        fingerprint: String,
        line: usize,
    },
    /// The key is listed on a `@revoked` line for the host (the first such line).
    Revoked {
        fingerprint: String,
        line: usize,
    },
    Unreadable {
        message: String,
    },
    Certificate,
}

/// The `client::Handler` that checks the server's key.
#[derive(Debug, Clone)]
pub struct HostKeyCheck {
    pub address: String,
    pub port: u16,
    pub known_hosts: PathBuf,
    pub accept_new: bool,
    /// Set when the key was refused; read by whoever called `connect`.
    pub refusal: Arc<Mutex<Option<Refusal>>>,
}

impl HostKeyCheck {
    fn refuse(&self, refusal: Refusal) -> bool {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(refusal);
        }
        false
    }

    fn verdict(&self, key: &PublicKey) -> bool {
        let text = match std::fs::read(&self.known_hosts) {
            // A comment in another encoding must not make the whole file unreadable.
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // As for `ssh`, a missing file knows no host.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return self.refuse(Refusal::Unreadable {
                    message: format!("cannot read it: {e}"),
                });
            }
        };
        let fingerprint = || key.fingerprint(HashAlg::Sha256).to_string();
        match lookup(&text, &lookup_name(&self.address, self.port), key) {
            Lookup::Known => true,
            Lookup::Revoked { line } => self.refuse(Refusal::Revoked {
                fingerprint: fingerprint(),
                line,
            }),
            Lookup::Changed { line } => self.refuse(Refusal::Changed {
                fingerprint: fingerprint(),
                line,
            }),
            Lookup::Unknown if self.accept_new => self.learn(key),
            Lookup::Unknown => self.refuse(Refusal::Unknown {
                fingerprint: fingerprint(),
            }),
        }
    }

    /// Trust on first use: appends the key for this host (creating the file if needed).
    fn learn(&self, key: &PublicKey) -> bool {
        // Lowercase, as `ssh` writes host names.
        match russh::keys::known_hosts::learn_known_hosts_path(
            &self.address.to_ascii_lowercase(),
            self.port,
            key,
            &self.known_hosts,
        ) {
            Ok(()) => true,
            Err(e) => self.refuse(Refusal::Unreadable {
                message: format!("cannot record the new key: {e}"),
            }),
        }
    }
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verdict(key),
            PublicKeyOrCertificate::Certificate(_) => self.refuse(Refusal::Certificate),
        })
    }

    /// OpenSSH announces its host keys in a small packet right after the login, and then
    /// confirms the first channel in another; it sends without `TCP_NODELAY` until a
    /// session starts, so the confirmation waits for our ACK of the announcement, which
    /// Linux delays ~40 ms when we have nothing to send. Answering with a no-op packet (a
    /// keepalive that asks for no reply) carries that ACK at once.
    async fn openssh_ext_host_keys_announced(
        &mut self,
        _keys: Vec<russh::keys::PublicKey>,
        session: &mut russh::client::Session,
    ) -> Result<(), Self::Error> {
        session.send_keepalive(false)
    }
}

/// The message for a refused key: what was found and what to do.
pub fn explain(
    refusal: &Refusal,
    host: &str,
    address: &str,
    port: u16,
    known_hosts: &std::path::Path,
) -> String {
    let entry = if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    };
    match refusal {
        Refusal::Unknown { fingerprint } => format!(
            "the host key of {host} ({address}:{port}) is not in {}: its {fingerprint} key is unknown; \
             if it is the right one, add it (`ssh-keyscan -p {port} {address} >> {}`), or pass --accept-new-host-keys to record it on first use",
            known_hosts.display(),
            known_hosts.display()
        ),
        Refusal::Changed { fingerprint, line } => format!(
            "the host key of {host} ({address}:{port}) CHANGED since it was recorded in {}:{line} (now {fingerprint}); \
             someone may be intercepting the connection. If the host was really reinstalled, remove that line \
             (`ssh-keygen -R '{entry}' -f {}`) and connect again",
            known_hosts.display(),
            known_hosts.display()
        ),
        Refusal::Revoked { fingerprint, line } => format!(
            "the host key of {host} ({address}:{port}) is REVOKED: {fingerprint} is marked @revoked in {}:{line}, \
             and a revoked key is refused whatever other lines say; the host may still use a compromised key, \
             or someone holding it may be impersonating the host. Give the host a new host key, remove its old \
             lines (`ssh-keygen -R '{entry}' -f {}`, which keeps the @revoked line), then add the new key \
             once you have checked its fingerprint over a channel you trust",
            known_hosts.display(),
            known_hosts.display()
        ),
        Refusal::Unreadable { message } => format!(
            "cannot check the host key of {host} ({address}:{port}) against {}: {message}",
            known_hosts.display()
        ),
        Refusal::Certificate => format!(
            "{host} ({address}:{port}) presented a host certificate; drover verifies plain host keys only, listed in known_hosts"
        ),
    }
}

/// What a `known_hosts` file says about the key a host presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// A plain line for the host has this key, and no `@revoked` line lists it.
    Known,
    /// No line for the host has a key of this type.
    Unknown,
    /// Lines for the host have keys of this type, none of them this key; `line` is the first.
    Changed { line: usize },
    /// A `@revoked` line for the host lists this key; `line` is the first.
    Revoked { line: usize },
}

/// The marker that may start a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// A valid line whose host field names the host being looked up.
#[derive(Debug)]
struct Entry {
    /// 1-based, counting every line of the file (comments and blank lines too).
    line: usize,
    marker: Marker,
    key: PublicKey,
}

/// The name `ssh` looks a host up by: `address` on port 22, `[address]:port` elsewhere,
/// lowercased (host names are case-insensitive).
fn lookup_name(address: &str, port: u16) -> String {
    let address = address.to_ascii_lowercase();
    if port == 22 {
        address
    } else {
        format!("[{address}]:{port}")
    }
}

/// Checks `key` for the host `name` (see [`lookup_name`]) against the text of a
/// `known_hosts` file, as OpenSSH's `check_key_in_hostkeys` does.
fn lookup(text: &str, name: &str, key: &PublicKey) -> Lookup {
    let entries = entries_for(text, name);
    // Comments are not part of the key.
    let same_key = |entry: &&Entry| entry.key.key_data() == key.key_data();
    if let Some(revoked) = entries
        .iter()
        .filter(|entry| entry.marker == Marker::Revoked)
        .find(same_key)
    {
        return Lookup::Revoked { line: revoked.line };
    }
    let plain = || entries.iter().filter(|entry| entry.marker == Marker::None);
    if plain().any(|entry| same_key(&entry)) {
        return Lookup::Known;
    }
    // ECDSA keys on different curves are different types, as for OpenSSH.
    match plain().find(|entry| entry.key.algorithm() == key.algorithm()) {
        Some(changed) => Lookup::Changed { line: changed.line },
        None => Lookup::Unknown,
    }
}

/// The valid lines of `text` for the host `name`; invalid lines are skipped, as `ssh` does.
fn entries_for(text: &str, name: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(idx, line)| {
            let (marker, key) = parse_line(line, name)?;
            Some(Entry {
                line: idx + 1,
                marker,
                key,
            })
        })
        .collect()
}

/// `[marker] hosts keytype base64 [comment]`, fields separated by any run of blanks. `None`
/// for a blank line, a comment, an invalid line or a line for other hosts.
fn parse_line(line: &str, name: &str) -> Option<(Marker, PublicKey)> {
    let mut fields = line.split_ascii_whitespace();
    let first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        _ if first.starts_with('@') => return None,
        _ if first.starts_with('#') => return None,
        _ => Marker::None,
    };
    let hosts = match marker {
        Marker::None => first,
        Marker::Revoked | Marker::CertAuthority => fields.next()?,
    };
    if !hosts_match(hosts, name) {
        return None;
    }
    let (algorithm, base64) = (fields.next()?, fields.next()?);
    // `from_openssh` also checks that the key type matches the type inside the key.
    let key = PublicKey::from_openssh(&format!("{algorithm} {base64}")).ok()?;
    Some((marker, key))
}

/// Whether the host field of a line names `name`: one hashed name (`|1|salt|hmac`), or a
/// comma-separated list of patterns of which one matches and no negated one (`!pattern`) does.
fn hosts_match(field: &str, name: &str) -> bool {
    if field.starts_with('|') {
        return hashed_name_matches(field, name);
    }
    let mut positive = false;
    for pattern in field.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, pattern),
        };
        if glob_matches(pattern.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as `HashKnownHosts` writes it. A malformed
/// field, or one that holds more than the hashed name, matches nothing.
fn hashed_name_matches(field: &str, name: &str) -> bool {
    let parts = || {
        let (salt, hash) = field.strip_prefix("|1|")?.split_once('|')?;
        Some((
            Base64::decode_vec(salt).ok()?,
            Base64::decode_vec(hash).ok()?,
        ))
    };
    match parts() {
        // OpenSSH accepts a salt of the digest's size only.
        Some((salt, hash)) if salt.len() == 20 => {
            hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice()
        }
        _ => false,
    }
}

/// OpenSSH's `match_pattern`: `*` matches any run of characters (even none), `?` exactly one,
/// anything else itself. Linear backtracking on the last `*`, so no pattern can blow up.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // The position of the last `*` seen, and where in `text` its match ends so far.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&want) if want == b'?' || want == c => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// HMAC-SHA1 (RFC 2104), to match hashed host names (`|1|salt|hash`).
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    use hmac::{KeyInit as _, Mac as _};
    // HMAC takes a key of any length, so this never fails.
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return [0; 20];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    use Lookup::{Changed, Known, Revoked, Unknown};

    // Real keys made by `ssh-keygen`. The host presents A.
    const A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKp+RyLGE9ukTkmRZ1PrafA+2GZR1vBe7vm5dVBK+M2o";
    const B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJD/pqcyF6TTRY0wGG3ylVgFQRxZ3jIOzcm+Ju59BXY1";
    const C: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnAP3Ab5OZN5hUiDOhWZtCN9IfSHUKHt+sOdsm+0Epl";
    const E: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDitC2r7Lgswz/tVHyYYHBj/wAkDnqAs9uk0v3biVZwUCNNGwXIs702C5JyucetQ7R3NcU17TqSN5SHFVFlOaro=";
    // Made by `ssh-keygen -H` from `example.com`, `[127.0.0.1]:2222` and `Web-1.Example.org`.
    const HASHED: [(&str, &str); 3] = [
        (
            "{example.com}",
            "|1|ax8W7/vzvNIj2HiS3lF3sGcP2q4=|W6LAg8W+8Xd7JqAkHEgYkTnwAk4=",
        ),
        (
            "{[127.0.0.1]:2222}",
            "|1|TJ2jUFdC3xtFjwQ0ZX6fGFbNN4U=|U5K9spNn1o8LqeE2iIwEAGfxJYY=",
        ),
        (
            "{web-1.example.org}",
            "|1|dhkmrbhfohv47kGt+sur1aQE2cY=|Th+E+CK7jawj2R6ukgk7WKoGVzM=",
        ),
    ];

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    /// `{A}` `{B}` `{C}` `{E}` stand for whole keys (type and base64), `{a}` for A's base64
    /// alone, `{example.com}` and the like for the hashed names above.
    fn expand(file: &str) -> String {
        let a64 = A.split_once(' ').unwrap().1;
        let file = file
            .replace("{A}", A)
            .replace("{B}", B)
            .replace("{C}", C)
            .replace("{E}", E)
            .replace("{a}", a64);
        HASHED
            .iter()
            .fold(file, |file, (name, hashed)| file.replace(name, hashed))
    }

    /// One case: a `known_hosts` file, the host's address and port, what A is there.
    type Row = (&'static str, &'static str, u16, Lookup);

    /// Looks A up for every row and reports all the wrong rows at once.
    #[track_caller]
    fn check(rows: &[Row]) {
        let wrong: Vec<String> = rows
            .iter()
            .filter_map(|&(file, address, port, want)| {
                let got = lookup(&expand(file), &lookup_name(address, port), &key(A));
                (got != want)
                    .then(|| format!("{file:?} for {address}:{port}: got {got:?}, want {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    }

    #[test]
    #[rustfmt::skip]
    fn a_revoked_key_is_refused_whatever_other_lines_say() {
        check(&[
            ("@revoked h {A}\nh {A}",                "h", 22,   Revoked { line: 1 }),
            ("h {A}\n@revoked h {A}",                "h", 22,   Revoked { line: 2 }),
            ("@revoked * {A}\nh {A}",                "h", 22,   Revoked { line: 1 }),
            ("@revoked h {A}",                       "h", 22,   Revoked { line: 1 }),
            ("@revoked [h]:2222 {A}\n[h]:2222 {A}",  "h", 2222, Revoked { line: 1 }),
            ("@revoked h {A}\n@revoked h {A}",       "h", 22,   Revoked { line: 1 }),
            // Another key's revocation says nothing about this one.
            ("@revoked h {B}\nh {A}",                "h", 22,   Known),
            ("@revoked h {B}",                       "h", 22,   Unknown),
            // As in OpenSSH, a revocation applies to the hosts its line names.
            ("@revoked other {A}\nh {A}",            "h", 22,   Known),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn any_line_with_the_same_key_accepts_it() {
        check(&[
            ("h {B}\nh {A}",         "h", 22, Known),
            ("h {A}\nh {B}",         "h", 22, Known),
            ("h {B}\nh {C}\nh {A}",  "h", 22, Known),
            ("h {B}",                "h", 22, Changed { line: 1 }),
            ("h {B}\nh {C}",         "h", 22, Changed { line: 1 }),
            // The comment of a key is not part of it.
            ("h {A} root@old-name",  "h", 22, Known),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_key_type_without_a_line_is_unknown_not_changed() {
        check(&[
            ("h {E}",           "h", 22, Unknown),
            ("h {E}\nh {B}",    "h", 22, Changed { line: 2 }),
            ("h {E}\nh {A}",    "h", 22, Known),
            ("",                "h", 22, Unknown),
            ("other {B}",       "h", 22, Unknown),
        ]);
        // The same file, the other way round.
        let ecdsa = lookup(&expand("h {A}\nh {B}"), "h", &key(E));
        assert_eq!(ecdsa, Unknown);
    }

    #[test]
    #[rustfmt::skip]
    fn hashed_host_names_match_their_host_only() {
        check(&[
            ("{example.com} {A}",                         "example.com",       22,   Known),
            ("{example.com} {A}",                         "EXAMPLE.com",       22,   Known),
            ("{example.com} {A}",                         "example.org",       22,   Unknown),
            ("{example.com} {A}",                         "example.com",       2222, Unknown),
            ("{example.com} {B}",                         "example.com",       22,   Changed { line: 1 }),
            ("{[127.0.0.1]:2222} {A}",                    "127.0.0.1",         2222, Known),
            ("{[127.0.0.1]:2222} {A}",                    "127.0.0.1",         22,   Unknown),
            ("{web-1.example.org} {A}",                   "Web-1.Example.org", 22,   Known),
            ("@revoked {example.com} {A}\nexample.com {A}", "example.com",      22,   Revoked { line: 1 }),
            // A hashed name stands alone in its field.
            ("{example.com},other {A}",                   "example.com",       22,   Unknown),
            // Malformed hashes match nothing and break nothing.
            ("|1|not base64|x {A}\nexample.com {A}",      "example.com",       22,   Known),
            ("|2|ax8W7/vzvNIj2HiS3lF3sGcP2q4=|W6LAg8W+8Xd7JqAkHEgYkTnwAk4= {B}", "example.com", 22, Unknown),
            ("|1|YQ==|W6LAg8W+8Xd7JqAkHEgYkTnwAk4= {B}",  "example.com",       22,   Unknown),
            ("| {B}",                                     "example.com",       22,   Unknown),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn port_22_is_named_plainly_and_other_ports_in_brackets() {
        check(&[
            ("h {A}",           "h",   22,   Known),
            ("h {B}",           "h",   2222, Unknown),
            ("[h]:2222 {A}",    "h",   2222, Known),
            ("[h]:2222 {B}",    "h",   2222, Changed { line: 1 }),
            ("[h]:2222 {B}",    "h",   2223, Unknown),
            ("[h]:2222 {B}",    "h",   22,   Unknown),
            // `ssh` never looks port 22 up in brackets.
            ("[h]:22 {B}",      "h",   22,   Unknown),
            ("[::1]:2222 {A}",  "::1", 2222, Known),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn host_lists_and_wildcards_match_case_insensitively() {
        check(&[
            ("a,h,b {A}",              "h",               22,   Known),
            ("a,b {B}",                "h",               22,   Unknown),
            ("a,,b, {B}",              "h",               22,   Unknown),
            ("*.example.org {A}",      "web.example.org", 22,   Known),
            ("*.example.org {B}",      "example.org",     22,   Unknown),
            ("web-? {A}",              "web-1",           22,   Known),
            ("web-? {B}",              "web-10",          22,   Unknown),
            ("w*b*-* {A}",             "web-1",           22,   Known),
            ("[10.0.0.*]:2222 {A}",    "10.0.0.5",        2222, Known),
            ("[10.0.0.*]:* {A}",       "10.0.0.5",        2200, Known),
            ("10.0.0.* {B}",           "10.0.0.5",        2222, Unknown),
            // A catch-all line counts for every host.
            ("* {B}",                  "h",               22,   Changed { line: 1 }),
            ("WEB.Example.ORG {A}",    "web.example.org", 22,   Known),
            ("web.example.org {A}",    "Web.Example.Org", 22,   Known),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_negated_pattern_excludes_its_line() {
        check(&[
            ("*.example.org,!db.example.org {B}\ndb.example.org {A}", "db.example.org",  22, Known),
            ("*.example.org,!db.example.org {B}",                     "db.example.org",  22, Unknown),
            ("!db.example.org,*.example.org {B}",                     "db.example.org",  22, Unknown),
            ("*.example.org,!db.example.org {A}",                     "web.example.org", 22, Known),
            // A negation alone matches nothing, not everything else.
            ("!db.example.org {B}",                                   "web.example.org", 22, Unknown),
            ("!db.example.org,* {A}",                                 "web.example.org", 22, Known),
            ("@revoked *,!h {A}\nh {A}",                              "h",               22, Known),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn fields_are_split_on_any_run_of_blanks() {
        check(&[
            ("h\tssh-ed25519\t{a}",                   "h", 22, Known),
            ("h   ssh-ed25519  \t {a}   a comment",   "h", 22, Known),
            ("  \th {A}",                             "h", 22, Known),
            ("h {A}\r\nother {B}\r\n",                "h", 22, Known),
            ("h\t{B}\nh  {A}",                        "h", 22, Known),
            ("@revoked\th\t{A}\nh {A}",                "h", 22, Revoked { line: 1 }),
            ("@cert-authority  h  {E}\nh\t{A}",        "h", 22, Known),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn comments_blank_and_invalid_lines_are_skipped() {
        check(&[
            ("# h {A}",                                 "h", 22, Unknown),
            ("#h {B}",                                  "h", 22, Unknown),
            ("  # h {B}\nh {A}",                        "h", 22, Known),
            ("@bogus h {B}",                            "h", 22, Unknown),
            ("@bogus h {B}\nh {A}",                     "h", 22, Known),
            ("h ssh-ed25519 not-base64",                "h", 22, Unknown),
            ("h ssh-ed25519 not-base64\nh {A}",         "h", 22, Known),
            // The type in the text must be the type inside the key.
            ("h ssh-rsa {a}",                           "h", 22, Unknown),
            ("h\nh ssh-ed25519\n@revoked\n@revoked h",  "h", 22, Unknown),
            // A protocol-1 RSA line.
            ("h 1024 35 1234567890",                    "h", 22, Unknown),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn line_numbers_count_every_line_of_the_file() {
        check(&[
            ("# c\n\n   \n# d\nh {B}",                            "h", 22, Changed { line: 5 }),
            ("\n\n@revoked h {A}\n",                               "h", 22, Revoked { line: 3 }),
            ("other {B}\n@bogus h {B}\nh ssh-ed25519 x\nh {C}",     "h", 22, Changed { line: 4 }),
            ("# c\r\n\r\nh {B}\r\n",                               "h", 22, Changed { line: 3 }),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn cert_authority_lines_do_not_vouch_for_plain_keys() {
        check(&[
            ("@cert-authority h {A}",                                   "h",               22, Unknown),
            ("@cert-authority h {B}",                                   "h",               22, Unknown),
            ("@cert-authority h {B}\nh {C}",                            "h",               22, Changed { line: 2 }),
            ("@cert-authority *.example.org {E}\nweb.example.org {A}",  "web.example.org", 22, Known),
            ("@cert-authority h ssh-ed25519-cert-v01@openssh.com {a}",  "h",               22, Unknown),
            ("@cert-authority\n@cert-authority h",                      "h",               22, Unknown),
        ]);
    }

    #[test]
    fn hmac_sha1_gives_the_published_vectors() {
        fn hex(bytes: &[u8]) -> String {
            use std::fmt::Write as _;
            bytes.iter().fold(String::new(), |mut out, byte| {
                write!(out, "{byte:02x}").unwrap();
                out
            })
        }
        // RFC 2202, test cases 1, 2, 6 (a key longer than a block) and 7.
        assert_eq!(
            hex(&hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(&hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
        assert_eq!(
            hex(&hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"
            )),
            "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"
        );
    }

    #[test]
    fn glob_backtracks_without_blowing_up() {
        let text = "a".repeat(5_000);
        assert!(!glob_matches(
            "*a*a*a*a*a*a*a*b".as_bytes(),
            text.as_bytes()
        ));
        assert!(glob_matches("*a*a*a*a*a*a*a*".as_bytes(), text.as_bytes()));
        assert!(glob_matches(b"*", b""));
        assert!(!glob_matches(b"", b"a"));
        assert!(glob_matches(b"a*b?d", b"axxbcd"));
    }

    /// The message the connect error carries for `file`, checked by `verdict` itself.
    fn message(file: &str, address: &str, port: u16, presented: &str, accept_new: bool) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, expand(file)).unwrap();
        let check = HostKeyCheck {
            address: address.to_owned(),
            port,
            known_hosts: path.clone(),
            accept_new,
            refusal: Arc::new(Mutex::new(None)),
        };
        assert!(!check.verdict(&key(presented)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expand(file));
        let refusal = check.refusal.lock().unwrap().clone().unwrap();
        explain(
            &refusal,
            "web-1",
            address,
            port,
            std::path::Path::new("/etc/drover/known_hosts"),
        )
    }

    #[test]
    fn messages_name_the_file_line_and_what_to_do() {
        let revoked = message(
            "# fleet\n\n10.0.0.5 {A}\n@revoked * {A}\n",
            "10.0.0.5",
            22,
            A,
            true,
        );
        expect!["the host key of web-1 (10.0.0.5:22) is REVOKED: SHA256:t26yzGoaVa4hIj5C4O6zo85lEmXuiOxAlPdZV8NsJOY is marked @revoked in /etc/drover/known_hosts:4, and a revoked key is refused whatever other lines say; the host may still use a compromised key, or someone holding it may be impersonating the host. Give the host a new host key, remove its old lines (`ssh-keygen -R '10.0.0.5' -f /etc/drover/known_hosts`, which keeps the @revoked line), then add the new key once you have checked its fingerprint over a channel you trust"].assert_eq(&revoked);
        let changed = message(
            "# fleet\n\n[10.0.0.5]:2222 {B}\n",
            "10.0.0.5",
            2222,
            A,
            true,
        );
        expect!["the host key of web-1 (10.0.0.5:2222) CHANGED since it was recorded in /etc/drover/known_hosts:3 (now SHA256:t26yzGoaVa4hIj5C4O6zo85lEmXuiOxAlPdZV8NsJOY); someone may be intercepting the connection. If the host was really reinstalled, remove that line (`ssh-keygen -R '[10.0.0.5]:2222' -f /etc/drover/known_hosts`) and connect again"].assert_eq(&changed);
        let unknown = message("10.0.0.5 {E}\n", "10.0.0.5", 22, A, false);
        expect!["the host key of web-1 (10.0.0.5:22) is not in /etc/drover/known_hosts: its SHA256:t26yzGoaVa4hIj5C4O6zo85lEmXuiOxAlPdZV8NsJOY key is unknown; if it is the right one, add it (`ssh-keyscan -p 22 10.0.0.5 >> /etc/drover/known_hosts`), or pass --accept-new-host-keys to record it on first use"].assert_eq(&unknown);
    }

    #[test]
    fn accept_new_learns_unknown_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        // A missing file (and directory) is created; a key of a new type is learned too.
        for (path, before) in [
            (dir.path().join("new/known_hosts"), None),
            (dir.path().join("other_type"), Some(expand("[h]:2222 {E}"))),
        ] {
            if let Some(before) = &before {
                std::fs::write(&path, before).unwrap();
            }
            let check = HostKeyCheck {
                address: "H".to_owned(),
                port: 2222,
                known_hosts: path.clone(),
                accept_new: true,
                refusal: Arc::new(Mutex::new(None)),
            };
            assert!(check.verdict(&key(A)));
            let after = std::fs::read_to_string(&path).unwrap();
            assert!(after.ends_with(&format!("[h]:2222 {A}\n")), "{after}");
            let learned = HostKeyCheck {
                accept_new: false,
                ..check
            };
            assert!(learned.verdict(&key(A)), "the learned key is known");
        }
        // `message` asserts the file is left as it was: changed and revoked keys are never learned.
        assert!(message("[h]:2222 {B}", "h", 2222, A, true).contains("CHANGED"));
        assert!(
            message("[h]:2222 {A}\n@revoked [h]:2222 {A}", "h", 2222, A, true).contains("REVOKED")
        );
    }

    #[test]
    fn an_unreadable_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let check = HostKeyCheck {
            address: "h".to_owned(),
            port: 22,
            known_hosts: dir.path().to_owned(),
            accept_new: true,
            refusal: Arc::new(Mutex::new(None)),
        };
        assert!(!check.verdict(&key(A)));
        let refusal = check.refusal.lock().unwrap().clone();
        assert!(
            matches!(&refusal, Some(Refusal::Unreadable { message }) if message.starts_with("cannot read it: ")),
            "{refusal:?}"
        );
    }
}
