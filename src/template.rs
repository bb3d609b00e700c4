//! Jinja-compatible templates (minijinja) with strict undefined variables and shell quoting.
//!
//! Templates compile once per distinct text and render many times (once per host), which is
//! what keeps resolving 50,000 instances fast. Text without `{{`, `{%` or `{#` is returned
//! as is. This module renders strings; it does not know where they came from.
//!
//! Templates come from the manifests, so a render is bounded: its output stops at
//! `MAX_OUTPUT_BYTES` (see `docs/decisions/0007-controller-inputs.md`).

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

/// Most bytes one render may produce. Rendered text is held per instance (per host), unlike a
/// copied `source` file that all hosts share, so this is below the input file limit.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// A rendering failure: what went wrong and on which line of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub code: &'static str,
    pub message: String,
    /// 1-based line within the template text, when known.
    pub line: Option<usize>,
    /// Byte range of the failing expression within the template text, when known.
    pub range: Option<std::ops::Range<usize>>,
    /// For an undefined variable: its name, so callers can suggest a near one.
    pub undefined: Option<String>,
}

/// A template engine with a cache of compiled templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    /// Template text → name under which `env` holds it compiled.
    names: BTreeMap<String, String>,
}

impl Default for Templates {
    fn default() -> Templates {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A template cannot pin a core: every render gets a budget of instructions.
        env.set_fuel(Some(FUEL));
        // Files usually end with a newline, and Jinja2's default of eating it would make
        // every rendered file differ from its source by one byte.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.add_filter("shell_quote", |v: Value| shell_quote(&value_text(&v)));
        env.add_filter("q", |v: Value| shell_quote(&value_text(&v)));
        Templates {
            env,
            names: BTreeMap::new(),
        }
    }

    /// Whether a text needs rendering at all.
    pub fn is_template(text: &str) -> bool {
        text.contains("{{") || text.contains("{%") || text.contains("{#")
    }

    /// The top-level names a template reads (`port` in `{{ port }}`, `host` in
    /// `{{ host.address }}`), compiling it on first use.
    pub fn names_used(
        &mut self,
        text: &str,
    ) -> Result<std::collections::BTreeSet<String>, TemplateError> {
        if !Templates::is_template(text) {
            return Ok(std::collections::BTreeSet::new());
        }
        let name = self.compiled(text)?;
        let template = self.env.get_template(&name).map_err(|e| convert(&e))?;
        Ok(template.undeclared_variables(false).into_iter().collect())
    }

    /// The value of one expression (`vhosts`, `hosts | selectattr(...)`) in `ctx`, as JSON.
    pub fn evaluate(
        &self,
        expression: &str,
        ctx: &Value,
    ) -> Result<serde_json::Value, TemplateError> {
        let compiled = self
            .env
            .compile_expression(expression)
            .map_err(|e| convert(&e))?;
        let value = compiled.eval(ctx).map_err(|e| convert(&e))?;
        serde_json::to_value(&value).map_err(|e| TemplateError {
            code: "template::render",
            message: format!("the expression's value cannot be used as items: {e}"),
            line: None,
            range: None,
            undefined: None,
        })
    }

    /// The name under which `text` is compiled, compiling it on first use.
    fn compiled(&mut self, text: &str) -> Result<String, TemplateError> {
        if let Some(name) = self.names.get(text) {
            return Ok(name.clone());
        }
        // Named by its text, not by compile order: a template that includes another by
        // name then means the same whatever was compiled before it (resolve splits a fleet
        // over threads, each with its own `Templates`).
        let hash = blake3::hash(text.as_bytes()).to_hex();
        let name = format!("t{}", hash.get(..32).unwrap_or(hash.as_str()));
        self.env
            .add_template_owned(name.clone(), text.to_owned())
            .map_err(|e| convert(&e))?;
        self.names.insert(text.to_owned(), name.clone());
        Ok(name)
    }

    /// Renders `text` with `ctx`, compiling it on first use.
    pub fn render(&mut self, text: &str, ctx: &Value) -> Result<String, TemplateError> {
        if !Templates::is_template(text) {
            return Ok(text.to_owned());
        }
        let name = self.compiled(text)?;
        let template = self.env.get_template(&name).map_err(|e| convert(&e))?;
        let mut out = CappedOutput::default();
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.bytes).map_err(|_| TemplateError {
                code: "template::render",
                message: "the template rendered to text that is not UTF-8".to_owned(),
                line: None,
                range: None,
                undefined: None,
            }),
            Err(_) if out.overflowed => Err(TemplateError {
                code: "template::too-large",
                message: format!(
                    "it renders to more than {MAX_OUTPUT_BYTES} bytes, the limit for one template"
                ),
                line: None,
                range: None,
                undefined: None,
            }),
            Err(e) => Err(convert(&e)),
        }
    }
}

/// Collects rendered bytes and refuses to grow past `MAX_OUTPUT_BYTES`; the refusal makes
/// minijinja stop rendering at once.
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered output over the limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Instructions one render may run: far above any real template (a 20,000-iteration loop
/// takes 5 ms), far below a runaway one (three nested `range(10000)` stop in 0.2 s).
pub const FUEL: u64 = 5_000_000;

fn convert(error: &minijinja::Error) -> TemplateError {
    use minijinja::ErrorKind;
    let code = match error.kind() {
        ErrorKind::OutOfFuel => "template::out-of-fuel",
        ErrorKind::UndefinedError => "template::undefined",
        ErrorKind::SyntaxError => "template::syntax",
        ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest => {
            "template::unknown-name"
        }
        _ => "template::render",
    };
    let message = match error.kind() {
        ErrorKind::OutOfFuel => "it ran out of fuel: it does too much work".to_owned(),
        ErrorKind::UndefinedError => error
            .detail()
            .map_or_else(|| "undefined variable".to_owned(), str::to_owned),
        _ => error
            .detail()
            .map_or_else(|| error.kind().to_string(), str::to_owned),
    };
    // minijinja says "`name` is undefined"; the name is what a suggestion needs.
    let undefined = (error.kind() == ErrorKind::UndefinedError)
        .then(|| message.split('`').nth(1).map(str::to_owned))
        .flatten();
    TemplateError {
        code,
        message,
        line: error.line(),
        range: error.range(),
        undefined,
    }
}

fn value_text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// Quotes a word for a POSIX shell. Words made only of safe characters stay as they are.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Joins an argv list into one command line, quoting every word.
pub fn join_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_named_by_its_text_not_by_what_was_compiled_before() {
        let (mut one, mut other) = (Templates::new(), Templates::new());
        let a = one.compiled("{{ 'a' }}").unwrap();
        one.compiled("{{ 'b' }}").unwrap();
        let b = one.compiled("{{ 'b' }}").unwrap();
        assert_eq!(other.compiled("{{ 'b' }}").unwrap(), b);
        assert_eq!(other.compiled("{{ 'a' }}").unwrap(), a);
        assert_ne!(a, b);
    }

    fn render(text: &str, ctx: &serde_json::Value) -> Result<String, TemplateError> {
        Templates::new().render(text, &Value::from(minijinja::value::Serde(&ctx)))
    }

    #[test]
    fn renders_variables_and_keeps_plain_text() {
        assert_eq!(
            render("workers {{ n }};\n", &serde_json::json!({"n": 2})).unwrap(),
            "workers 2;\n"
        );
        assert_eq!(
            render("no template here", &serde_json::json!({})).unwrap(),
            "no template here"
        );
    }

    #[test]
    fn undefined_variables_are_errors_with_a_line() {
        let error = render("a\n{{ missing }}", &serde_json::json!({})).unwrap_err();
        assert_eq!(error.code, "template::undefined");
        assert_eq!(error.line, Some(2));
    }

    #[test]
    fn shell_quote_filter_quotes_hostile_values() {
        let out = render(
            "echo {{ msg | shell_quote }} {{ safe | q }}",
            &serde_json::json!({"msg": "it's $(rm -rf /)", "safe": "a.b"}),
        )
        .unwrap();
        assert_eq!(out, r"echo 'it'\''s $(rm -rf /)' a.b");
    }

    #[test]
    fn output_stops_at_the_limit() {
        let error = render(
            "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
            &serde_json::json!({}),
        )
        .unwrap_err();
        assert_eq!(error.code, "template::too-large");
        assert!(
            error.message.contains("16777216 bytes"),
            "{}",
            error.message
        );
    }

    #[test]
    fn argv_words_are_quoted() {
        assert_eq!(
            join_argv(&["echo", "hello world", "", "x"]),
            "echo 'hello world' '' x"
        );
    }
}
