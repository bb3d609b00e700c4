//! `archive`: a tar or zip archive from the controller unpacked into a directory on the
//! host, once per content. A marker file in the destination holds the SHA-256 of what was
//! unpacked there; it is what makes the task idempotent and what the drift probe reads.
//!
//! Two round trips at most: a look at the marker (no write when it holds the archive's
//! hash), then one script that receives the archive on stdin into a temporary file, checks
//! the host has the programs the format needs, lists the members with the host's `tar` (or
//! `unzip`) and refuses any that would land outside the destination (absolute names, `..`
//! components, links pointing out, directories of the destination that are symbolic
//! links), unpacks, and writes the marker last. A failure before the marker leaves it
//! unwritten, so the next apply unpacks again (decision 0017).

use std::fmt::Write as _;
use std::sync::Arc;

use crate::model::task_kind::ArchiveFormat;
use crate::task::{
    Applied, Failure, REFUSED, TaskContext, UNCHANGED, exec, exec_with_input, failed,
    refused_or_failed,
};
use crate::template::shell_quote;
use crate::transport::{CommandLine, Transport};

/// The archive as the manifests want it unpacked.
#[derive(Debug)]
pub struct Desired<'a> {
    /// The host's name, for messages that say what to install where.
    pub host: &'a str,
    /// The archive on the controller, as reports name it.
    pub source: &'a str,
    pub dest: &'a str,
    pub format: ArchiveFormat,
    pub content: &'a Arc<[u8]>,
    /// Hex SHA-256 of `content`.
    pub sha256: &'a str,
    pub marker: &'a str,
}

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let what = format!("archive {} → {}", want.source, want.dest);
    let mut commands = Vec::new();
    // Look before sending: an archive already unpacked costs one small command, no upload.
    let out = exec(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(look_script(want)),
        &mut commands,
    )
    .await?;
    if !out.status.success() {
        return Err(failed(&out, &what, &mut commands));
    }
    if String::from_utf8_lossy(&out.stdout.bytes)
        .lines()
        .any(|l| l.trim() == UNCHANGED)
    {
        return Ok(Applied {
            changed: false,
            summary: format!("{what}: already unpacked"),
            diff: None,
            commands,
        });
    }
    let out = exec_with_input(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(unpack_script(want)),
        Some(want.content.to_vec()),
        &mut commands,
    )
    .await?;
    refused_or_failed(&out, &what, &mut commands)?;
    let short: String = want.sha256.chars().take(12).collect();
    Ok(Applied {
        changed: true,
        summary: format!("{what}: unpacked {} (sha256 {short})", want.format.name()),
        diff: None,
        commands,
    })
}

/// Removes what the task's unpacking created in `dest` (the top-level entries listed beside
/// the marker), then the marker: what was in `dest` before is never touched. Nothing
/// recorded means nothing to remove: unchanged.
pub async fn remove<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let what = format!("archive in {}", want.dest);
    let mut commands = Vec::new();
    let out = exec(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(remove_script(want)),
        &mut commands,
    )
    .await?;
    if !out.status.success() {
        return Err(failed(&out, &what, &mut commands));
    }
    let changed = !String::from_utf8_lossy(&out.stdout.bytes)
        .lines()
        .any(|l| l.trim() == UNCHANGED);
    Ok(Applied {
        changed,
        summary: if changed {
            format!("{what}: removed what was unpacked")
        } else {
            format!("{what}: nothing unpacked")
        },
        diff: None,
        commands,
    })
}

/// The script that removes the recorded entries and the marker. A recorded name is one
/// path component (no `/`, not `.` or `..`): an edited list can only name entries of `dest`.
/// `rm -rf` on a symbolic link removes the link, never what it points to.
pub fn remove_script(want: &Desired<'_>) -> String {
    format!(
        r#"d={dest}; m={marker}; c="$m.created"
if [ ! -e "$m" ] && [ ! -L "$m" ] && [ ! -e "$c" ] && [ ! -L "$c" ]; then echo {UNCHANGED}; exit 0; fi
if [ -f "$c" ] && [ ! -L "$c" ]; then
  while IFS= read -r n; do
    case "$n" in ''|.|..|*/*) continue ;; esac
    rm -rf -- "$d/$n"
  done < "$c"
fi
rm -f -- "$c" "$m"
"#,
        dest = shell_quote(want.dest),
        marker = shell_quote(want.marker),
    )
}

/// Prints the unchanged marker when the marker file holds the archive's hash.
pub fn look_script(want: &Desired<'_>) -> String {
    format!(
        "m={}\nif [ -f \"$m\" ] && [ ! -L \"$m\" ] && [ \"$(cat -- \"$m\" 2>/dev/null)\" = {} ]; then echo {UNCHANGED}; fi\n",
        shell_quote(want.marker),
        shell_quote(want.sha256),
    )
}

/// The programs a format needs on the host, each with what to install to get it.
fn tools(format: ArchiveFormat) -> &'static [(&'static str, &'static str)] {
    const TAR: (&str, &str) = ("tar", "the tar package");
    match format {
        ArchiveFormat::Tar => &[TAR],
        ArchiveFormat::TarGz => &[TAR, ("gzip", "the gzip package")],
        ArchiveFormat::TarXz => &[TAR, ("xz", "xz-utils (apt) or xz (dnf, apk, zypper)")],
        ArchiveFormat::TarBz2 => &[TAR, ("bzip2", "the bzip2 package")],
        ArchiveFormat::Zip => &[("unzip", "the unzip package")],
    }
}

/// How the host's tools list (names, then a long listing that shows links) and unpack
/// the archive in `$t` into `$d`. The compression flag comes from the archive's first
/// bytes, never from its name.
fn commands(format: ArchiveFormat) -> (String, String, String) {
    let tar = |flag: &str| {
        (
            format!("tar -t{flag}f \"$t\""),
            format!("tar -tv{flag}f \"$t\""),
            // Files belong to the task's user, not to whoever built the archive.
            format!("tar -x{flag}f \"$t\" -C \"$d\" --no-same-owner"),
        )
    };
    match format {
        ArchiveFormat::Tar => tar(""),
        ArchiveFormat::TarGz => tar("z"),
        ArchiveFormat::TarXz => tar("J"),
        ArchiveFormat::TarBz2 => tar("j"),
        ArchiveFormat::Zip => (
            "unzip -Z1 \"$t\"".to_owned(),
            "unzip -Z \"$t\"".to_owned(),
            "unzip -o -q \"$t\" -d \"$d\"".to_owned(),
        ),
    }
}

/// Which lines of the long listing are links whose target would leave the destination.
/// Conservative: a link line mentioning an absolute target or any `..` component is
/// refused, even one whose target would resolve inside. Zip listings do not show link
/// targets, so a zip holding any symbolic link is refused.
fn bad_link_program(format: ArchiveFormat) -> &'static str {
    match format {
        ArchiveFormat::Zip => "/^l/ { print; exit }",
        ArchiveFormat::Tar
        | ArchiveFormat::TarGz
        | ArchiveFormat::TarXz
        | ArchiveFormat::TarBz2 => {
            r"/^[lh]/ || / link to / { if ($0 ~ / -> \// || $0 ~ / link to \// || $0 ~ /(^|[ \/])\.\.([ \/]|$)/) { print; exit } }"
        }
    }
}

/// The script that receives the archive on stdin, checks it and unpacks it.
pub fn unpack_script(want: &Desired<'_>) -> String {
    let (list, long, extract) = commands(want.format);
    let mut out = format!(
        r#"set -e
h={host}; a={source}; d={dest}; m={marker}; s={sha256}
_refuse() {{ printf '%s\n' "$*" >&2; exit {REFUSED}; }}
t=; e=; mt=
trap 'rm -f "$t" "$e" "$mt"' EXIT
t=$(mktemp "${{TMPDIR:-/tmp}}/drover-archive.XXXXXX")
e=$(mktemp "${{TMPDIR:-/tmp}}/drover-archive.XXXXXX")
cat > "$t"
"#,
        host = shell_quote(want.host),
        source = shell_quote(want.source),
        dest = shell_quote(want.dest),
        marker = shell_quote(want.marker),
        sha256 = shell_quote(want.sha256),
    );
    for (tool, package) in tools(want.format) {
        let _ = writeln!(
            out,
            "command -v {tool} >/dev/null 2>&1 || _refuse \"host $h has no {tool} to unpack $a ({format}); install {package}\"",
            format = want.format.name(),
        );
    }
    let _ = write!(
        out,
        r#"if [ -e "$d" ] && [ ! -d "$d" ]; then _refuse "cannot unpack $a: $d exists and is not a directory"; fi
l=$({list} 2>"$e") || {{ cat "$e" >&2; exit 1; }}
bad=$(printf '%s\n' "$l" | awk '/^\// || /(^|\/)\.\.(\/|$)/ {{ print; exit }}')
[ -z "$bad" ] || _refuse "archive $a holds the member $bad, which would land outside $d; drover unpacks only archives whose members stay inside their destination"
v=$({long} 2>"$e") || {{ cat "$e" >&2; exit 1; }}
bad=$(printf '%s\n' "$v" | awk '{links}')
[ -z "$bad" ] || _refuse "archive $a holds a link that points outside $d ($bad); drover refuses links with absolute targets or .. in them"
bad=$(printf '%s\n' "$l" | awk -F/ '{{ p = ""; for (i = 1; i < NF; i++) {{ if ($i == "" || $i == ".") continue; p = (p == "") ? $i : p "/" $i; if (!(p in seen)) {{ seen[p] = 1; print p }} }} }}' | while IFS= read -r p; do if [ -L "$d/$p" ]; then printf '%s\n' "$p"; break; fi; done)
[ -z "$bad" ] || _refuse "cannot unpack $a: $d/$bad is a symbolic link, and unpacking through it could write outside $d"
mkdir -p -- "$d"
c="$m.created"
tops=$(printf '%s\n' "$l" | awk -F/ '{{ for (i = 1; i <= NF; i++) if ($i != "" && $i != ".") {{ print $i; break }} }}' | sort -u)
bad=$(printf '%s\n' "$tops" | grep '^\.drover-archive' | head -n 1 || true)
[ -z "$bad" ] || _refuse "archive $a holds $bad, a name drover keeps for its own records in $d"
new=$(printf '%s\n' "$tops" | while IFS= read -r p; do if [ -n "$p" ] && [ ! -e "$d/$p" ] && [ ! -L "$d/$p" ]; then printf '%s\n' "$p"; fi; done)
# What earlier unpacks created, read before this one can write anything.
old=
if [ -f "$c" ] && [ ! -L "$c" ]; then old=$(cat -- "$c"); fi
{extract}
if [ -n "$new" ]; then
  ct=$(mktemp "$d/.drover-archive.XXXXXX")
  printf '%s\n%s\n' "$old" "$new" | grep -v '^$' | sort -u > "$ct"
  chmod 644 "$ct"
  mv -f -- "$ct" "$c"
fi
mt=$(mktemp "$d/.drover-archive.XXXXXX")
printf '%s\n' "$s" > "$mt"
chmod 644 "$mt"
mv -f -- "$mt" "$m"
mt=
echo "DROVER_DID unpacked into $d"
"#,
        links = bad_link_program(want.format),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(format: ArchiveFormat, content: &Arc<[u8]>) -> Desired<'_> {
        Desired {
            host: "web-1",
            source: "files/app's.tar.gz",
            dest: "/opt/my app",
            format,
            content,
            sha256: "ab12",
            marker: "/opt/my app/.drover-archive-app.unpack",
        }
    }

    #[test]
    fn every_value_is_quoted_and_the_flag_follows_the_format() {
        let content: Arc<[u8]> = Arc::from(Vec::new());
        let s = unpack_script(&want(ArchiveFormat::TarXz, &content));
        assert!(s.contains("a='files/app'\\''s.tar.gz'"), "{s}");
        assert!(s.contains("d='/opt/my app'"), "{s}");
        assert!(s.contains("tar -xJf \"$t\" -C \"$d\""), "{s}");
        assert!(s.contains("command -v xz"), "{s}");
        let s = unpack_script(&want(ArchiveFormat::Zip, &content));
        assert!(s.contains("unzip -o -q \"$t\" -d \"$d\""), "{s}");
        assert!(s.contains("host $h has no unzip"), "{s}");
        let s = look_script(&want(ArchiveFormat::Tar, &content));
        assert!(
            s.contains("m='/opt/my app/.drover-archive-app.unpack'"),
            "{s}"
        );
    }
}
