//! The shell lines that replace a small file atomically: write a temporary file next to it,
//! set its mode, then rename it over the old one. A reader (cron, `sysctl --system`) sees
//! the old content or the new, never half of it. The temporary file's name starts with a
//! dot, which cron and `sysctl --system` both skip.

use crate::template::shell_quote;

/// Lines that make `$f` hold exactly `content` with `mode`, writing through a temporary
/// file in directory `$d`. They expect `set -e`, and remove the temporary file on failure.
pub fn replace_file(content: &str, mode: u32) -> String {
    format!(
        r#"t=$(mktemp "$d/.drover-XXXXXX")
trap 'rm -f -- "$t"' EXIT
printf '%s' {content} > "$t"
chmod {mode:04o} -- "$t"
mv -f -- "$t" "$f"
trap - EXIT
"#,
        content = shell_quote(content),
    )
}

/// A test that succeeds when `$f` is a regular file holding exactly `content`.
pub fn holds(content: &str) -> String {
    format!(
        r#"{{ [ -f "$f" ] && [ ! -L "$f" ] && printf '%s' {} | cmp -s - "$f"; }}"#,
        shell_quote(content)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_content_is_renamed_over_the_old() {
        let s = replace_file("a = 'b'\n", 0o644);
        assert!(s.contains(r#"mktemp "$d/.drover-XXXXXX""#), "{s}");
        assert!(
            s.contains("printf '%s' 'a = '\\''b'\\''\n' > \"$t\""),
            "{s}"
        );
        assert!(s.contains("chmod 0644 -- \"$t\""));
        assert!(s.find("chmod").unwrap() < s.find("mv -f").unwrap());
        assert!(holds("x\n").contains("cmp -s - \"$f\""));
    }
}
